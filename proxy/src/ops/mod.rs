//! Operating the running gateway: the admin API, Prometheus metrics, the request log, and the process
//! lifecycle (binary upgrade, hand-over of late records, graceful drain).

pub mod admin;
pub mod connections;
pub mod console;
pub mod handover;
pub mod metrics;
pub mod path;
pub mod request_log;
pub mod upgrade;
pub mod warmup;
