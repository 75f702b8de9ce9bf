//! Integration tests: the real server on port 0 with a fresh SQLite store, driven over HTTP.

mod api;
mod gateway;
mod helpers;
mod lifecycle;
mod masking_db;
mod mysql;
mod postgres;
mod retention;
mod services;
