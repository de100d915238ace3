//! Levitate: an LLM API gateway on Pingora in front of Google's Cloud Code `v1internal` API.
//!
//! This crate holds everything with I/O: configuration, the Pingora services, the account pool, OAuth,
//! the upstream client and the store. Byte-level work (parsing, rewriting) lives in `levitate-filters`.

pub mod accounts;
pub mod app;
pub mod atomic_file;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod egress;
pub mod gateway;
pub mod memory;
pub mod ops;
pub mod pool;
pub mod server;
pub mod shared;
pub mod store;
pub mod tenancy;
pub mod tls;
pub mod upstream;
