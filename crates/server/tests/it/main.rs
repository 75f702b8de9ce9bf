//! Integration tests: the real server on port 0 with a fresh SQLite store, driven over HTTP.

mod api;
mod gateway;
mod helpers;
mod mysql;
mod postgres;
mod redteam;
mod retention;
mod services;
