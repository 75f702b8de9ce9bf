//! The gateway: wire-protocol proxies (PostgreSQL first) that let a client through only while it
//! holds an active grant, record every statement, and cut the session at the grant's end.
//!
//! Not built yet: this crate holds the gateway's place in the workspace (DESIGN.md, "Parts").
