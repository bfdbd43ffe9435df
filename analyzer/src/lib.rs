//! imd's analyzer: reads series, runs anomaly-detection and forecasting
//! models on them, and publishes what it finds.
//!
//! The modules follow the data: `read` (sources and the in-process store)
//! → `engine` (per-series model state, driven by `query` definitions) with
//! `model` (the detectors and forecasters) → `emit` (synthetic series) and
//! `web` (the page). `demo` wires them into the embedded default.

pub mod alert;
pub mod cli;
pub mod config;
pub mod demo;
pub mod emit;
pub mod engine;
pub mod http;
pub mod model;
pub mod query;
pub mod read;
pub mod report;
pub mod run;
pub mod schedule;
pub mod shard;
pub mod web;
