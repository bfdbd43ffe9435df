//! Where series come from. Every source answers the same question: the
//! points of the series a selector matches, since a time.

pub mod http;
pub mod promql;
pub mod rate;
pub mod remote;
pub mod selector;
pub mod store;

pub use selector::{MatchOp, Matcher, Selector};

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
    /// The source did not answer in time.
    #[error("source timed out: {0}")]
    Timeout(String),
    /// The source answered with an HTTP error status.
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        /// The URL asked (without credentials).
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the answer's body (the server's error message).
        body: String,
    },
    /// The source's settings are unusable (bad URL, unreadable CA or token
    /// file, invalid header).
    #[error("source configuration: {0}")]
    Config(String),
    /// The answer was not what the protocol says (content type, snappy,
    /// protobuf, JSON).
    #[error("undecodable answer: {0}")]
    Decode(String),
    /// A streamed remote-read answer's framing was broken.
    #[error("remote-read stream: {0}")]
    Frame(#[from] remote::frames::FrameError),
    /// A chunk of a streamed remote-read answer could not be decoded.
    #[error("series {series}: {source}")]
    Chunk {
        /// The series' labels.
        series: String,
        /// What was wrong with the chunk.
        source: remote::xor::ChunkError,
    },
    /// The answer exceeded a configured size limit.
    #[error("answer too large: {0}")]
    TooLarge(String),
}

impl ReadError {
    /// A short name of the error's kind, for counters and logs (one of
    /// [`http::ERROR_KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            ReadError::Unavailable(_) => "unavailable",
            ReadError::Timeout(_) => "timeout",
            ReadError::Status { .. } => "http_status",
            ReadError::Config(_) => "config",
            ReadError::Decode(_) => "decode",
            ReadError::Frame(_) => "frame",
            ReadError::Chunk { .. } => "chunk",
            ReadError::TooLarge(_) => "too_large",
        }
    }
}

/// A place series are read from.
pub trait Source: Send + Sync {
    /// Points of every series `selector` matches with timestamps in
    /// `[from_ms, to_ms]`.
    fn read(
        &self,
        selector: &Selector,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>, ReadError>;

    /// Points of every series a PromQL expression yields in
    /// `[from_ms, to_ms]`. Only sources that evaluate PromQL (query_range)
    /// can; the others say so.
    fn read_expr(
        &self,
        expr: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>, ReadError> {
        let _ = (expr, from_ms, to_ms);
        Err(ReadError::Config(
            "this source reads series selectors only; a PromQL expression needs a query_range source".into(),
        ))
    }
}
