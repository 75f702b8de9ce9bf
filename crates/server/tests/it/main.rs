//! Integration tests: the real server on port 0 with a fresh SQLite store, driven over HTTP.

mod access;
mod api;
mod audit_search;
mod gateway;
mod gateway_password;
mod helpers;
mod identity;
mod lifecycle;
mod masking_db;
mod metrics;
mod mysql;
mod oidc;
mod openapi;
mod policy_explain;
mod postgres;
mod redteam;
mod retention;
mod services;
