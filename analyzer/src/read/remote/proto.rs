//! Remote-read (and remote-write 1.0) protobuf messages, written as prost
//! structs by hand so the build needs no `protoc`. Field numbers follow
//! Prometheus' `prompb/remote.proto` and `prompb/types.proto`; fields imd
//! never uses (exemplars, native histograms, metadata) are left out and
//! skipped as unknown fields when a server sends them.

/// One float sample.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// One label pair.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A series with raw samples (the SAMPLES answer).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The series' labels.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// The comparison of a [`LabelMatcher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatcherType {
    /// `=`
    Eq = 0,
    /// `!=`
    Neq = 1,
    /// `=~`
    Re = 2,
    /// `!~`
    Nre = 3,
}

/// One label matcher of a query.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    /// A [`MatcherType`].
    #[prost(enumeration = "MatcherType", tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or (unanchored as written; the server anchors it) regex.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// Hints about the query the read serves; servers may ignore them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    /// Query step in milliseconds.
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// Surrounding PromQL function or aggregation.
    #[prost(string, tag = "2")]
    pub func: String,
    /// Start of the range in milliseconds.
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    /// End of the range in milliseconds.
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Labels of a surrounding aggregation.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// Whether `grouping` is a `by` (else `without`) list.
    #[prost(bool, tag = "6")]
    pub by: bool,
    /// Range of a surrounding range vector in milliseconds.
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// Encodings of a [`Chunk`], matching Prometheus' `chunkenc.Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ChunkEncoding {
    /// Not set.
    Unknown = 0,
    /// Gorilla XOR float chunk.
    Xor = 1,
    /// Native histogram chunk.
    Histogram = 2,
    /// Native float histogram chunk.
    FloatHistogram = 3,
}

/// One TSDB chunk; `[min_time_ms, max_time_ms]` is inclusive.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// Timestamp of the first sample.
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Timestamp of the last sample.
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// A [`ChunkEncoding`].
    #[prost(enumeration = "ChunkEncoding", tag = "3")]
    pub r#type: i32,
    /// The encoded chunk: a view into the frame it came in, not a copy.
    #[prost(bytes = "bytes", tag = "4")]
    pub data: bytes::Bytes,
}

/// One series as chunks (the STREAMED_XOR_CHUNKS answer).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    /// The series' labels, sorted.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Chunks in start-time order; they may overlap.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// Answer types a client accepts, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseType {
    /// One snappy-compressed [`ReadResponse`] with raw samples.
    Samples = 0,
    /// A stream of framed [`ChunkedReadResponse`]s.
    StreamedXorChunks = 1,
}

/// One query of a read request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    /// Start of the range, milliseconds, inclusive.
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// End of the range, milliseconds, inclusive.
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Series selection: all must match.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// Optional hints.
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// The remote-read request body (before snappy compression).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    /// The queries.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// [`ResponseType`]s in order of preference; none means SAMPLES.
    #[prost(enumeration = "ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// Samples of one query.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    /// Matched series, samples in time order.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// The SAMPLES answer: one result per query, in query order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    /// Results, in the order of the request's queries.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// One frame's message of the STREAMED_XOR_CHUNKS answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    /// Series (or parts of one series) in this frame.
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// Which of the request's queries these series answer.
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes written by hand from the .proto field numbers and wire types,
    /// so a wrong tag or type in the structs above is caught.
    #[test]
    fn wire_layout_matches_the_proto_field_numbers() {
        let req = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![LabelMatcher {
                    r#type: MatcherType::Re as i32,
                    name: "a".into(),
                    value: "b".into(),
                }],
                hints: None,
            }],
            accepted_response_types: vec![
                ResponseType::StreamedXorChunks as i32,
                ResponseType::Samples as i32,
            ],
        };
        let expected: Vec<u8> = vec![
            0x0a, 14, // queries (1, LEN) 14 bytes
            0x08, 1, // start_timestamp_ms (1, VARINT)
            0x10, 2, // end_timestamp_ms (2, VARINT)
            0x1a, 8, // matchers (3, LEN)
            0x08, 2, // type RE
            0x12, 1, b'a', // name
            0x1a, 1, b'b', // value
            0x12, 2, 1, 0, // accepted_response_types (2, packed) [1, 0]
        ];
        assert_eq!(req.encode_to_vec(), expected);

        let chunk = Chunk {
            min_time_ms: 5,
            max_time_ms: 6,
            r#type: ChunkEncoding::Xor as i32,
            data: vec![9].into(),
        };
        assert_eq!(
            chunk.encode_to_vec(),
            vec![0x08, 5, 0x10, 6, 0x18, 1, 0x22, 1, 9]
        );

        let sample = Sample {
            value: 1.0,
            timestamp: 3,
        };
        let mut expected = vec![0x09];
        expected.extend_from_slice(&1.0f64.to_le_bytes());
        expected.extend_from_slice(&[0x10, 3]);
        assert_eq!(sample.encode_to_vec(), expected);

        let resp = ChunkedReadResponse {
            chunked_series: vec![],
            query_index: 7,
        };
        assert_eq!(resp.encode_to_vec(), vec![0x10, 7]);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // A TimeSeries with an extra field 4 (native histograms) holding
        // an empty message, then a sample.
        let mut bytes = vec![0x22, 0];
        bytes.extend_from_slice(&[0x12, 2, 0x10, 4]);
        let ts = TimeSeries::decode(&bytes[..]).unwrap();
        assert_eq!(
            ts.samples,
            vec![Sample {
                value: 0.0,
                timestamp: 4
            }]
        );
    }
}

/// A remote-write 1.0 request: series with their samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series, labels sorted by name, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}
