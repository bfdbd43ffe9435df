//! A streamed series kept in the XOR chunks it came in, checked but not yet
//! decoded.
//!
//! A point takes 16 bytes decoded and about 1 to 7 in a chunk, so a query's
//! whole history held as chunks until each series' own job decodes it takes
//! a fraction of the memory, and the read does not wait for the points to
//! be stored. Every chunk is decoded once at read time without keeping its
//! points (so that a corrupt chunk still costs only its series, and the
//! read knows how many points each series has and when its last one is);
//! [`Encoded::decode`] decodes them again, with the same checks, when the
//! points are wanted.

use bytes::Bytes;

use super::xor::{ChunkError, XorDecoder};
use super::{PointChecks, proto};
use crate::model::Point;

/// A checked series' chunks and what they hold.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The XOR chunks (header included) reaching into the range, in the
    /// order they came.
    chunks: Vec<Bytes>,
    from_ms: i64,
    to_ms: i64,
    /// How many points decoding keeps.
    len: usize,
    /// Timestamps of the last two finite points kept, latest first.
    last_finite: [Option<i64>; 2],
}

/// What checking a series' chunks found.
pub(super) enum Checked {
    /// The chunks are in time order: kept as they are.
    Chunks(Encoded),
    /// Chunks overlap: decoded now, so that the points can be sorted and
    /// freed of duplicates once.
    Points(Vec<Point>),
}

impl Encoded {
    /// Decodes every chunk of `series` reaching into `[from_ms, to_ms]`
    /// without keeping the points: the series as chunks, with the checks'
    /// findings for the caller to count; `Err` when a chunk is unusable.
    /// Each chunk must be an XOR chunk (see `admit_series`).
    pub(super) fn check(
        series: &proto::ChunkedSeries,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(Checked, PointChecks), ChunkError> {
        let chunks: Vec<Bytes> = super::in_range(series, from_ms, to_ms)
            .map(|c| c.data.clone())
            .collect();
        let mut len = 0;
        let mut last_finite = [None, None];
        let checks = walk(&chunks, from_ms, to_ms, |p| {
            len += 1;
            if p.v.is_finite() {
                last_finite = [Some(p.t), last_finite[0]];
            }
        })?;
        let encoded = Encoded {
            chunks,
            from_ms,
            to_ms,
            len,
            last_finite,
        };
        if checks.sorted {
            return Ok((Checked::Chunks(encoded), checks));
        }
        let mut points = encoded.decode();
        points.sort_by_key(|p| p.t);
        points.dedup_by_key(|p| p.t);
        Ok((Checked::Points(points), checks))
    }

    /// How many points [`Encoded::decode`] gives.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no point is left.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The timestamp of the `n`-th finite point from the end (`n` is 1 or
    /// 2), if there are that many.
    pub fn last_finite_t(&self, n: usize) -> Option<i64> {
        self.last_finite.get(n.checked_sub(1)?).copied().flatten()
    }

    /// The points, as the check found them.
    pub fn decode(&self) -> Vec<Point> {
        let mut points = Vec::with_capacity(self.len);
        // The chunks decoded whole when they were checked; an error here
        // would mean the bytes changed, and the points before it are kept.
        let _ = walk(&self.chunks, self.from_ms, self.to_ms, |p| points.push(p));
        points
    }
}

/// `points` (in time order) as XOR chunks of `per_chunk` points, checked
/// for `[from_ms, to_ms]`: for tests of what takes [`Encoded`] series.
#[cfg(test)]
pub(crate) fn encode_points(
    points: &[Point],
    per_chunk: usize,
    from_ms: i64,
    to_ms: i64,
) -> Encoded {
    let chunks = points
        .chunks(per_chunk.max(1))
        .map(|c| {
            let bits: Vec<(i64, u64)> = c.iter().map(|p| (p.t, p.v.to_bits())).collect();
            proto::Chunk {
                min_time_ms: c[0].t,
                max_time_ms: c[c.len() - 1].t,
                r#type: proto::ChunkEncoding::Xor as i32,
                data: super::xor::encoder::encode(&bits).into(),
            }
        })
        .collect();
    let series = proto::ChunkedSeries {
        labels: vec![],
        chunks,
    };
    match Encoded::check(&series, from_ms, to_ms) {
        Ok((Checked::Chunks(e), _)) => e,
        _ => panic!("points in time order make good chunks"),
    }
}

impl PartialEq for Encoded {
    fn eq(&self, other: &Self) -> bool {
        self.decode() == other.decode()
    }
}

/// Decodes `chunks` in order, handing each point the checks keep to `keep`.
#[inline(always)]
fn walk(
    chunks: &[Bytes],
    from_ms: i64,
    to_ms: i64,
    mut keep: impl FnMut(Point),
) -> Result<PointChecks, ChunkError> {
    let mut checks = PointChecks::new(from_ms, to_ms);
    for chunk in chunks {
        let mut d = XorDecoder::new(chunk)?;
        // Chunks may overlap each other, but the samples of one chunk must
        // move forward in time.
        checks.last_t = None;
        while let Some((t, bits)) = d.next_bits()? {
            let p = Point {
                t,
                v: f64::from_bits(bits),
            };
            if let Some(p) = checks.admit(p) {
                keep(p);
            }
        }
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::super::{STALE_NAN_BITS, proto};
    use super::*;
    use crate::read::remote::xor::encoder::encode;

    fn chunk(samples: &[(i64, f64)]) -> proto::Chunk {
        let bits: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        proto::Chunk {
            min_time_ms: samples.first().map_or(0, |s| s.0),
            max_time_ms: samples.last().map_or(0, |s| s.0),
            r#type: proto::ChunkEncoding::Xor as i32,
            data: encode(&bits).into(),
        }
    }

    fn series(chunks: Vec<proto::Chunk>) -> proto::ChunkedSeries {
        proto::ChunkedSeries {
            labels: vec![],
            chunks,
        }
    }

    fn pts(p: &[(i64, f64)]) -> Vec<Point> {
        p.iter().map(|&(t, v)| Point { t, v }).collect()
    }

    #[test]
    fn kept_chunks_decode_to_the_checked_points() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let s = series(vec![
            chunk(&[(0, 1.0), (1000, 2.0), (2000, 3.0)]),
            chunk(&[(3000, f64::NAN), (4000, 5.0), (5000, stale), (6000, 7.0)]),
            // Wholly after the range: not kept.
            chunk(&[(9000, 9.0)]),
        ]);
        let (checked, checks) = Encoded::check(&s, 1000, 5500).unwrap();
        let Checked::Chunks(e) = checked else {
            panic!("in-order chunks are kept as chunks");
        };
        assert!(checks.sorted);
        assert_eq!(e.chunks.len(), 2);
        // Trimmed to the range, the staleness marker dropped, NaN kept.
        let got = e.decode();
        assert_eq!(e.len(), got.len());
        assert_eq!(got.len(), 4);
        assert_eq!(got[..2], pts(&[(1000, 2.0), (2000, 3.0)])[..]);
        assert!(got[2].t == 3000 && got[2].v.is_nan());
        assert_eq!(got[3], Point { t: 4000, v: 5.0 });
        // The last finite points, latest first; the NaN does not count.
        assert_eq!(e.last_finite_t(1), Some(4000));
        assert_eq!(e.last_finite_t(2), Some(2000));
        assert_eq!(e.last_finite_t(3), None);
        assert_eq!(e.last_finite_t(0), None);
        assert!(!e.is_empty());
    }

    #[test]
    fn overlapping_chunks_are_decoded_at_once_sorted_and_deduplicated() {
        let s = series(vec![
            chunk(&[(0, 1.0), (2000, 3.0)]),
            chunk(&[(1000, 2.0), (2000, 3.0), (3000, 4.0)]),
        ]);
        let (checked, checks) = Encoded::check(&s, 0, 10_000).unwrap();
        assert!(!checks.sorted);
        let Checked::Points(p) = checked else {
            panic!("overlapping chunks are decoded at once");
        };
        assert_eq!(p, pts(&[(0, 1.0), (1000, 2.0), (2000, 3.0), (3000, 4.0)]));
    }

    #[test]
    fn a_corrupt_chunk_fails_the_check_and_a_series_out_of_range_is_empty() {
        let mut bad = chunk(&[(0, 1.0), (1000, 2.0), (2000, 3.0)]);
        let mut data = bad.data.to_vec();
        data.truncate(data.len() - 2);
        bad.data = data.into();
        assert!(Encoded::check(&series(vec![bad]), 0, 10_000).is_err());
        let (checked, _) = Encoded::check(&series(vec![chunk(&[(0, 1.0)])]), 5000, 6000).unwrap();
        let Checked::Chunks(e) = checked else {
            panic!("no chunk overlaps");
        };
        assert!(e.is_empty() && e.decode().is_empty() && e.last_finite_t(1).is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Whatever the chunks hold (times going back, NaN, staleness
        /// markers, infinities) and wherever the range falls, what the
        /// check counts is what decoding gives.
        #[test]
        fn the_check_describes_what_decoding_gives(
            chunks in proptest::collection::vec(
                proptest::collection::vec((-50i64..2000, 0u8..8, proptest::prelude::any::<f64>()), 0..60),
                0..6,
            ),
            from in -100i64..20_000,
            span in 0i64..30_000,
        ) {
            let stale = f64::from_bits(STALE_NAN_BITS);
            let mut t = 0i64;
            let chunks: Vec<proto::Chunk> = chunks
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| {
                    let samples: Vec<(i64, f64)> = c
                        .iter()
                        .map(|&(dt, kind, v)| {
                            t += dt;
                            let v = match kind {
                                0 => f64::NAN,
                                1 => stale,
                                2 => f64::INFINITY,
                                _ => v,
                            };
                            (t, v)
                        })
                        .collect();
                    chunk(&samples)
                })
                .collect();
            let (checked, _) = Encoded::check(&series(chunks), from, from + span).unwrap();
            if let Checked::Chunks(e) = checked {
                let got = e.decode();
                proptest::prop_assert_eq!(e.len(), got.len());
                let finite: Vec<i64> = got.iter().filter(|p| p.v.is_finite()).map(|p| p.t).collect();
                proptest::prop_assert_eq!(e.last_finite_t(1), finite.last().copied());
                proptest::prop_assert_eq!(e.last_finite_t(2), finite.iter().rev().nth(1).copied());
                proptest::prop_assert!(got.windows(2).all(|w| w[0].t < w[1].t));
                proptest::prop_assert!(got.iter().all(|p| p.t >= from && p.t <= from + span));
                proptest::prop_assert!(got.iter().all(|p| p.v.to_bits() != STALE_NAN_BITS));
            }
        }
    }

    #[test]
    fn points_going_back_in_time_within_a_chunk_are_dropped_and_counted() {
        let s = series(vec![chunk(&[
            (0, 1.0),
            (2000, 2.0),
            (1000, 9.0),
            (3000, 3.0),
        ])]);
        let (checked, checks) = Encoded::check(&s, 0, 10_000).unwrap();
        assert_eq!(checks.non_monotonic, 1);
        let Checked::Chunks(e) = checked else {
            panic!("in order once the bad point is dropped");
        };
        assert_eq!(e.decode(), pts(&[(0, 1.0), (2000, 2.0), (3000, 3.0)]));
    }
}
