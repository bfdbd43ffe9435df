//! HTTP serving shared by both imd binaries: listening on Go-style addresses,
//! TLS and basic auth from a `--web.config.file` in exporter-toolkit's format,
//! health endpoints, and metrics exposition with content negotiation and gzip.

mod auth;
pub mod config;
mod listen;
mod metrics;
pub mod reload;
mod server;
mod signal;
mod tls;

pub use auth::{Identity, Role};
pub use config::WebConfig;
pub use listen::parse_listen_address;
pub use metrics::{exposition_response, health_routes};
pub use reload::Reloader;
pub use server::serve;
pub use signal::shutdown_signal;
