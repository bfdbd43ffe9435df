//! Where series come from. Every source answers the same question: the
//! points of the series a selector matches, since a time.

pub mod rate;
pub mod selector;
pub mod store;

pub use selector::{Matcher, MatchOp, Selector};

use crate::model::Point;

/// A series' identity: its labels (including `__name__`), sorted by name.
pub type Labels = Vec<(String, String)>;

/// A series and its points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// The series' labels, sorted, including `__name__`.
    pub labels: Labels,
    /// Points in time order.
    pub points: Vec<Point>,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The source could not be reached or answered with an error.
    #[error("source unavailable: {0}")]
    Unavailable(String),
}

/// A place series are read from.
pub trait Source: Send + Sync {
    /// Points of every series `selector` matches with timestamps in
    /// `[from_ms, to_ms]`.
    fn read(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<SeriesData>, ReadError>;
}
