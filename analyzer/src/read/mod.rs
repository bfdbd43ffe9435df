//! Where series come from. Every source answers the same question: the
//! points of the series a selector matches, since a time.

pub mod http;
pub mod listing;
pub mod promql;
pub mod pushdown;
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
    pub points: Samples,
}

/// A series' points as its source delivered them: decoded, or still in the
/// chunks they were streamed in (decoded by the job that uses them, so that
/// a read of many series does not hold them all decoded; see
/// [`remote::encoded`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    /// Decoded points, in time order.
    Points(Vec<Point>),
    /// Checked XOR chunks.
    Chunks(remote::encoded::Encoded),
}

impl Samples {
    /// The points, decoding them if they are still in chunks (and counting
    /// what decoding finds in the source's read counters).
    pub fn into_points(self) -> Vec<Point> {
        match self {
            Samples::Points(p) => p,
            Samples::Chunks(c) => c.into_points(),
        }
    }

    /// A copy of the points, decoded if they are still in chunks (nothing
    /// counted: for looking at them).
    pub fn to_points(&self) -> Vec<Point> {
        match self {
            Samples::Points(p) => p.clone(),
            Samples::Chunks(c) => c.decode(),
        }
    }

    /// How many points there are; for series still in chunks, how many
    /// samples the chunks hold, which may be a few more than the points
    /// (staleness markers, samples outside the range asked for).
    pub fn len(&self) -> usize {
        match self {
            Samples::Points(p) => p.len(),
            Samples::Chunks(c) => c.len(),
        }
    }

    /// Whether there is no point.
    pub fn is_empty(&self) -> bool {
        match self {
            Samples::Points(p) => p.is_empty(),
            Samples::Chunks(c) => c.is_empty(),
        }
    }

    /// The timestamp of the `n`-th finite point from the end (`n` is 1 or
    /// 2), if there are that many: what tells whether a series is fresh
    /// without decoding it.
    pub fn last_finite_t(&self, n: usize) -> Option<i64> {
        match self {
            Samples::Points(p) => p
                .iter()
                .rev()
                .filter(|p| p.v.is_finite())
                .nth(n.checked_sub(1)?)
                .map(|p| p.t),
            Samples::Chunks(c) => c.last_finite_t(n),
        }
    }
}

impl FromIterator<Point> for Samples {
    fn from_iter<I: IntoIterator<Item = Point>>(points: I) -> Self {
        Samples::Points(points.into_iter().collect())
    }
}

impl PartialEq<Vec<Point>> for Samples {
    fn eq(&self, other: &Vec<Point>) -> bool {
        match self {
            Samples::Points(p) => p == other,
            Samples::Chunks(c) => &c.decode() == other,
        }
    }
}

impl From<Vec<Point>> for Samples {
    fn from(points: Vec<Point>) -> Self {
        Samples::Points(points)
    }
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
    /// The source failed several times in a row and is not asked again
    /// before its backoff ends.
    #[error("source backing off for {seconds:.1} s more after {failures} failed reads in a row")]
    Backoff {
        /// Seconds left.
        seconds: f64,
        /// Consecutive failures so far.
        failures: u32,
    },
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
            ReadError::Backoff { .. } => "backoff",
        }
    }

    /// Whether the failure says the source is down or overloaded (no
    /// answer, a timeout, HTTP 429 or 5xx), so that it is given time
    /// before being asked again.
    pub fn is_outage(&self) -> bool {
        match self {
            ReadError::Unavailable(_) | ReadError::Timeout(_) => true,
            ReadError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

thread_local! {
    /// The read scope of this thread (see [`in_query`]).
    static SCOPE: std::cell::RefCell<Option<Scope>> = const { std::cell::RefCell::new(None) };
}

/// What a source learns about the read it serves and tells back, without
/// widening [`Source::read`]: the engine runs each query's reads on one
/// thread, inside [`in_query`].
struct Scope {
    query: String,
    partial: bool,
    owner: Option<crate::shard::Owner>,
}

/// Runs `f` (the reads of one query) with `query` as the name under which
/// sources count problems in their answers; returns `f`'s result and
/// whether a source reported the answer as partial (a series lost to a
/// corrupt chunk, a stream cut short, a limit hit), in which case series
/// missing from it must keep their state rather than be dropped.
pub fn in_query<R>(query: &str, f: impl FnOnce() -> R) -> (R, bool) {
    in_sharded_query(query, None, f)
}

/// As [`in_query`], for a replica that analyses only the series `owner`
/// says are its own in the selector reads of `f`: sources that can list
/// series first read only those (see [`pushdown`]); the others read all
/// and leave out the rest. Either way the answer holds only owned series.
pub fn in_sharded_query<R>(
    query: &str,
    owner: Option<crate::shard::Owner>,
    f: impl FnOnce() -> R,
) -> (R, bool) {
    let previous = SCOPE.with(|s| {
        s.borrow_mut().replace(Scope {
            query: query.to_string(),
            partial: false,
            owner,
        })
    });
    let r = f();
    let partial = SCOPE.with(|s| {
        let mine = std::mem::replace(&mut *s.borrow_mut(), previous);
        mine.is_some_and(|m| m.partial)
    });
    (r, partial)
}

/// The query the current read serves (empty outside [`in_query`]).
pub(crate) fn current_query() -> String {
    SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .map(|m| m.query.clone())
            .unwrap_or_default()
    })
}

/// Which series the current read keeps (`None` outside
/// [`in_sharded_query`] or when not sharded).
pub(crate) fn current_owner() -> Option<crate::shard::Owner> {
    SCOPE.with(|s| s.borrow().as_ref().and_then(|m| m.owner.clone()))
}

/// Tells the enclosing [`in_query`] that the answer lacks some series.
pub(crate) fn mark_partial() {
    SCOPE.with(|s| {
        if let Some(m) = s.borrow_mut().as_mut() {
            m.partial = true;
        }
    });
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
