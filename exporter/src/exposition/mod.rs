//! The in-memory shape of metrics between collection and exposition, and the
//! encoders for the two wire formats Prometheus scrapes.
//!
//! Written here rather than taken from `prometheus-client`: that crate encodes
//! OpenMetrics only and owns the metric values itself, while the exporter must
//! serve the classic text format (node_exporter's default, what `promtool check
//! metrics` lints) and pass through families read from textfiles verbatim.

mod model;
pub mod parse;
mod text;

pub use model::{Family, MetricType, Sample, format_value, write_value};
pub use parse::{ParseError, ParseOptions, parse_text, parse_text_with};
pub use text::{Format, encode};
