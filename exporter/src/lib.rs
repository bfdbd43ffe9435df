//! imd's node exporter: collectors that read Linux's /proc and /sys, textfiles
//! and log files, and the HTTP plumbing (exposition, web config, health) that
//! both imd binaries share.
//!
//! The modules follow the path a scrape takes: `collectors` gather metric
//! families, `scrape` runs them in turn and times them, `exposition`
//! writes the result in the Prometheus text or OpenMetrics format, and `web`
//! serves it with TLS and basic auth as Prometheus' exporter-toolkit does.

pub mod cli;
pub mod collectors;
pub mod config;
pub mod exposition;
pub mod fsutil;
pub mod logging;
pub mod paths;
pub mod scrape;
pub mod web;
