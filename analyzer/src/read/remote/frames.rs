//! The framing of a STREAMED_XOR_CHUNKS answer, and the reassembly of
//! series that span frames.
//!
//! Each frame is `uvarint(len)`, a big-endian CRC-32C (Castagnoli) of the
//! payload, then `len` bytes of a `ChunkedReadResponse`. A series may be
//! split over consecutive frames; once another series starts, the previous
//! one is complete.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read};

use bytes::Bytes;
use prost::Message;

use super::proto::{ChunkedReadResponse, ChunkedSeries};

/// Prometheus' own remote-read client accepts frames up to 50 MB
/// (`DefaultChunkedReadLimit`); servers send about 1 MiB per frame.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 50_000_000;

/// Why a stream of frames could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended inside a frame.
    #[error("stream truncated in frame {frame}: {part} needs {needed} bytes, only {got} arrived")]
    Truncated {
        /// Frame number, from 1.
        frame: u64,
        /// Which part was cut: `length`, `checksum` or `payload`.
        part: &'static str,
        /// Bytes that part needs.
        needed: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The payload's CRC-32C does not match the frame's checksum.
    #[error("frame {frame} is corrupt: checksum {expected:#010x} sent, {actual:#010x} computed")]
    Checksum {
        /// Frame number, from 1.
        frame: u64,
        /// The checksum in the frame.
        expected: u32,
        /// The checksum of the payload received.
        actual: u32,
    },
    /// A frame announces more bytes than the configured limit.
    #[error("frame {frame} announces {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Frame number, from 1.
        frame: u64,
        /// The announced size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The length prefix is not a valid uvarint.
    #[error("frame {frame} has an invalid length prefix (varint longer than 64 bits)")]
    BadLength {
        /// Frame number, from 1.
        frame: u64,
    },
    /// The payload is not a `ChunkedReadResponse`.
    #[error("frame {frame} does not hold a ChunkedReadResponse: {source}")]
    Message {
        /// Frame number, from 1.
        frame: u64,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// The frame answers a query that was not asked.
    #[error("frame {frame} answers query {index}, but {sent} queries were sent")]
    QueryIndex {
        /// Frame number, from 1.
        frame: u64,
        /// The query index sent.
        index: i64,
        /// How many queries the request had.
        sent: usize,
    },
    /// Reading the stream failed (connection reset, timeout).
    #[error("reading frame {frame}: {source}")]
    Io {
        /// Frame number, from 1.
        frame: u64,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads checked frames off a byte stream.
pub struct FrameReader<R> {
    inner: BufReader<R>,
    limit: usize,
    frames: u64,
}

impl<R: Read> FrameReader<R> {
    /// Frames from `inner`, refusing any larger than `limit` bytes.
    pub fn new(inner: R, limit: usize) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            limit,
            frames: 0,
        }
    }

    /// How many frames were started so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next frame's payload, checked; `None` when the stream ends
    /// cleanly between frames.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let frame = self.frames + 1;
        let io = |source| FrameError::Io { frame, source };
        // Length: a uvarint read byte by byte.
        let mut size = 0u64;
        let mut shift = 0u32;
        let mut len_bytes = 0usize;
        loop {
            let byte = {
                let buf = self.inner.fill_buf().map_err(io)?;
                match buf.first() {
                    Some(b) => *b,
                    None if len_bytes == 0 => return Ok(None),
                    None => {
                        return Err(FrameError::Truncated {
                            frame,
                            part: "length",
                            needed: len_bytes + 1,
                            got: len_bytes,
                        });
                    }
                }
            };
            self.inner.consume(1);
            if len_bytes == 0 {
                self.frames = frame;
            }
            len_bytes += 1;
            if len_bytes == 10 && byte > 1 {
                return Err(FrameError::BadLength { frame });
            }
            size |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
        }
        if size > self.limit as u64 {
            return Err(FrameError::TooLarge {
                frame,
                size,
                limit: self.limit,
            });
        }
        let size = size as usize;
        let mut crc = [0u8; 4];
        let got = read_full(&mut self.inner, &mut crc).map_err(io)?;
        if got < 4 {
            return Err(FrameError::Truncated {
                frame,
                part: "checksum",
                needed: 4,
                got,
            });
        }
        let expected = u32::from_be_bytes(crc);
        // A buffer of its own for every frame: the chunks decoded from it
        // are views into it (no copy of each chunk), and it is freed once
        // the last of them is.
        let mut payload = Vec::with_capacity(size);
        let got = (&mut self.inner)
            .take(size as u64)
            .read_to_end(&mut payload)
            .map_err(io)?;
        if got < size {
            return Err(FrameError::Truncated {
                frame,
                part: "payload",
                needed: size,
                got,
            });
        }
        let actual = crc32c::crc32c(&payload);
        if actual != expected {
            return Err(FrameError::Checksum {
                frame,
                expected,
                actual,
            });
        }
        Ok(Some(Bytes::from(payload)))
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Whole series out of a stream of frames: parts of one series in
/// consecutive frames are joined.
pub struct SeriesStream<R> {
    frames: FrameReader<R>,
    /// Series decoded but not yet handed out; all but the last are complete.
    queue: VecDeque<ChunkedSeries>,
    ended: bool,
    /// How many queries the request had (frames answer `0..queries`).
    queries: usize,
}

impl<R: Read> SeriesStream<R> {
    /// Series from the frames of `inner`, each frame at most `max_frame` bytes.
    pub fn new(inner: R, max_frame: usize) -> Self {
        SeriesStream::with_queries(inner, max_frame, 1)
    }

    /// As [`SeriesStream::new`], for the answer to a request of `queries`
    /// queries (series of all of them, in the order they come).
    pub fn with_queries(inner: R, max_frame: usize, queries: usize) -> Self {
        SeriesStream {
            frames: FrameReader::new(inner, max_frame),
            queue: VecDeque::new(),
            ended: false,
            queries: queries.max(1),
        }
    }

    /// How many frames were read so far.
    pub fn frames(&self) -> u64 {
        self.frames.frames()
    }

    /// The next complete series, `None` at the end of the stream.
    pub fn next_series(&mut self) -> Result<Option<ChunkedSeries>, FrameError> {
        loop {
            if self.queue.len() >= 2 || (self.ended && !self.queue.is_empty()) {
                return Ok(self.queue.pop_front());
            }
            if self.ended {
                return Ok(None);
            }
            let frame = self.frames.frames() + 1;
            let Some(payload) = self.frames.next_frame()? else {
                self.ended = true;
                continue;
            };
            let msg = ChunkedReadResponse::decode(payload)
                .map_err(|source| FrameError::Message { frame, source })?;
            if usize::try_from(msg.query_index).map_or(true, |i| i >= self.queries) {
                return Err(FrameError::QueryIndex {
                    frame,
                    index: msg.query_index,
                    sent: self.queries,
                });
            }
            for series in msg.chunked_series {
                match self.queue.back_mut() {
                    Some(last) if last.labels == series.labels => last.chunks.extend(series.chunks),
                    _ => self.queue.push_back(series),
                }
            }
        }
    }
}

/// Frames `payload` as a server does (for tests of readers).
#[cfg(test)]
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = payload.len() as u64;
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::super::proto::{Chunk, Label};
    use super::*;

    fn series(name: &str, chunk_ids: &[i64]) -> ChunkedSeries {
        ChunkedSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            chunks: chunk_ids
                .iter()
                .map(|&i| Chunk {
                    min_time_ms: i,
                    max_time_ms: i,
                    r#type: 1,
                    data: vec![0, 0].into(),
                })
                .collect(),
        }
    }

    fn response(series: Vec<ChunkedSeries>) -> Vec<u8> {
        frame(
            &ChunkedReadResponse {
                chunked_series: series,
                query_index: 0,
            }
            .encode_to_vec(),
        )
    }

    fn all(bytes: &[u8], limit: usize) -> Result<Vec<ChunkedSeries>, FrameError> {
        let mut s = SeriesStream::new(bytes, limit);
        let mut out = Vec::new();
        while let Some(x) = s.next_series()? {
            out.push(x);
        }
        Ok(out)
    }

    #[test]
    fn checksum_is_crc32c_big_endian() {
        // The CRC-32C check value of "123456789" is 0xE3069283.
        assert_eq!(&frame(b"123456789")[1..5], &[0xe3, 0x06, 0x92, 0x83]);
    }

    #[test]
    fn series_spanning_frames_are_joined() {
        let mut bytes = response(vec![series("a", &[1, 2])]);
        bytes.extend(response(vec![series("a", &[3]), series("b", &[4])]));
        bytes.extend(response(vec![series("b", &[5])]));
        bytes.extend(response(vec![series("c", &[6])]));
        let got = all(&bytes, 1 << 20).unwrap();
        let ids: Vec<(String, Vec<i64>)> = got
            .iter()
            .map(|s| {
                (
                    s.labels[0].value.clone(),
                    s.chunks.iter().map(|c| c.min_time_ms).collect(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                ("a".to_string(), vec![1, 2, 3]),
                ("b".to_string(), vec![4, 5]),
                ("c".to_string(), vec![6])
            ]
        );
    }

    #[test]
    fn empty_stream_has_no_series() {
        assert!(all(&[], 100).unwrap().is_empty());
    }

    #[test]
    fn truncation_anywhere_is_reported() {
        let bytes = response(vec![series("a", &[1, 2, 3])]);
        for cut in 1..bytes.len() {
            let err = all(&bytes[..cut], 1 << 20).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { frame: 1, .. }),
                "cut {cut}: {err}"
            );
        }
        // A multi-byte length cut in the middle.
        let err = all(&[0x80], 1 << 20).unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { part: "length", .. }),
            "{err}"
        );
        // The second frame cut in its payload.
        let mut two = response(vec![series("a", &[1])]);
        let second = response(vec![series("b", &[2])]);
        two.extend_from_slice(&second[..second.len() - 1]);
        let err = all(&two, 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    frame: 2,
                    part: "payload",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn flipped_bits_fail_the_checksum() {
        let bytes = response(vec![series("a", &[1])]);
        for i in 5..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let err = all(&bad, 1 << 20).unwrap_err();
            assert!(
                matches!(err, FrameError::Checksum { frame: 1, .. }),
                "byte {i}: {err}"
            );
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_reading_them() {
        let bytes = response(vec![series("a", &[1, 2, 3])]);
        let err = all(&bytes, 10).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { limit: 10, .. }),
            "{err}"
        );
        // A huge announced length with no data behind it.
        let err = all(&[0xff, 0xff, 0xff, 0xff, 0x0f], 1000).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    size: 0xffff_ffff,
                    ..
                }
            ),
            "{err}"
        );
        let err = all(&[0xff; 10], usize::MAX).unwrap_err();
        assert!(matches!(err, FrameError::BadLength { frame: 1 }), "{err}");
    }

    #[test]
    fn garbage_payload_and_foreign_query_index_are_errors() {
        let err = all(&frame(&[0xff, 0xff]), 100).unwrap_err();
        assert!(matches!(err, FrameError::Message { frame: 1, .. }), "{err}");
        let msg = ChunkedReadResponse {
            chunked_series: vec![],
            query_index: 3,
        };
        let err = all(&frame(&msg.encode_to_vec()), 100).unwrap_err();
        assert!(
            matches!(err, FrameError::QueryIndex { index: 3, .. }),
            "{err}"
        );
    }
}
