//! Levitate: an LLM API gateway on Pingora in front of Google's Cloud Code `v1internal` API.
//!
//! This crate holds everything with I/O: configuration, the Pingora services, the account pool, OAuth,
//! the upstream client and the store. Byte-level work (parsing, rewriting) lives in `levitate-filters`.

pub mod accounts_file;
pub mod admin;
pub mod affinity;
pub mod app;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod exchange;
pub mod gateway;
pub mod handover;
pub mod lockout;
pub mod login;
pub mod metrics;
pub mod models;
pub mod pool;
pub mod quota;
pub mod reload;
pub mod request_log;
pub mod server;
pub mod signatures;
pub mod store;
pub mod upgrade;
pub mod upstream;
