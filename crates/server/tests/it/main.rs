//! Integration tests: the real server on port 0 with a fresh SQLite store, driven over HTTP.

mod access;
mod api;
mod audit_search;
mod gateway;
mod helpers;
mod metrics;
mod mysql;
mod openapi;
mod postgres;
mod retention;
mod services;
