//! The domain core of jitgate: who may ask for what, how a request moves through its lifecycle,
//! and when things are due. Nothing here does I/O or reads the system time directly, so every
//! rule is unit-testable with a [`clock::FakeClock`].

pub mod access;
pub mod clock;
pub mod duration;
pub mod error;
pub mod event;
pub mod ids;
pub mod lifecycle;
pub mod masking;
pub mod policy;
pub mod policy_check;
pub mod policy_explain;
pub mod policy_reach;
pub mod principal;
pub mod schedule;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::CoreError;
pub use event::{EventDraft, Outcome};
pub use jiff::Timestamp;
pub use lifecycle::{AccessRequest, EndReason, Grant, State};
pub use policy::{AccessAsk, Decision, Policy};
pub use principal::{Principal, PrincipalKind, Selector};
