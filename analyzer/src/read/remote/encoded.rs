//! A streamed series kept in the XOR chunks it came in, decoded by the job
//! that uses it.
//!
//! A point takes 16 bytes decoded and about 1 to 7 in a chunk, so a query's
//! whole history held as chunks until each series' own job decodes it takes
//! a fraction of the memory, and the read does not wait for the points to
//! be stored. The read decodes only what it must know at once: each chunk's
//! header (how many samples it holds), and the last chunks, back to the two
//! latest finite points (whether the series is fresh). The rest is decoded
//! once, on every core, by [`Encoded::into_points`], which counts what its
//! checks find (points going back in time, infinite values) under the query
//! that read the series; a corrupt chunk found there costs the series its
//! points from that chunk on, for this read, and is counted and logged.
//!
//! Decoding whole chunks twice, once to check them at read time and once in
//! the job, took half of a streamed read's CPU on a host shared with
//! Prometheus; see bench/RESULTS.md.

use std::sync::Arc;

use bytes::Bytes;

use super::xor::{ChunkError, XorDecoder};
use super::{PointChecks, proto};
use crate::model::Point;
use crate::read::ReadError;
use crate::read::http::{self, ReadStats};

/// Where decoding a read's series reports what it finds: the source's
/// counters under the query that read them, and the log.
#[derive(Debug)]
pub(crate) struct Origin {
    /// The source's counters.
    pub(super) stats: Arc<ReadStats>,
    /// The query the series were read for.
    pub(super) query: String,
    /// The endpoint, credentials taken out, for messages.
    pub(super) url: String,
}

/// A series' chunks and what the read learnt of them.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The XOR chunks (header included) reaching into the range, in time
    /// order (by their announced times).
    chunks: Vec<Bytes>,
    from_ms: i64,
    to_ms: i64,
    /// Samples the chunks hold by their headers, at least as many as
    /// decoding keeps (it trims to the range and drops staleness markers);
    /// exactly as many when the read decoded every chunk, and never 0 when
    /// decoding keeps any.
    samples: usize,
    /// Timestamps of the last two finite points kept, latest first.
    last_finite: [Option<i64>; 2],
    /// The series' labels as `{a="b"}`, for messages.
    series: String,
    /// Where [`Encoded::into_points`] reports; none for series made up in
    /// tests.
    origin: Option<Arc<Origin>>,
}

/// What checking a series' chunks found.
pub(super) enum Checked {
    /// The chunks follow each other in time: kept as they are.
    Chunks(Encoded),
    /// Chunks overlap: decoded now, so that the points can be sorted and
    /// freed of duplicates once, with what the checks found.
    Points(Vec<Point>, PointChecks),
}

impl Encoded {
    /// The chunks of `series` reaching into `[from_ms, to_ms]`, kept as
    /// they are when they follow each other in time, with the latest
    /// finite points found by decoding the last chunks; `Err` when one of
    /// those chunks is unusable. Each chunk must be an XOR chunk with a
    /// header, and `samples` what their headers count (see
    /// `admit_series`).
    pub(super) fn check(
        series: &proto::ChunkedSeries,
        from_ms: i64,
        to_ms: i64,
        mut samples: usize,
        origin: Option<&Arc<Origin>>,
    ) -> Result<Checked, ChunkError> {
        let in_range: Vec<&proto::Chunk> = super::in_range(series, from_ms, to_ms).collect();
        let chunks: Vec<Bytes> = in_range.iter().map(|c| c.data.clone()).collect();
        let follow = in_range
            .windows(2)
            .all(|w| w[1].min_time_ms > w[0].max_time_ms);
        if !follow {
            let mut checks = PointChecks::new(from_ms, to_ms);
            let mut points = Vec::new();
            walk(&chunks, &mut checks, |p| points.push(p))?;
            points.sort_by_key(|p| p.t);
            points.dedup_by_key(|p| p.t);
            return Ok(Checked::Points(points, checks));
        }
        // The chunks follow each other, so the latest finite points are in
        // the last chunk holding any: decoded from the end until two are
        // found. Were every chunk decoded, the points are counted exactly
        // (so a series with none is known to be empty).
        let mut last_finite = [None, None];
        let mut kept = 0;
        let mut decoded = 0;
        for c in chunks.iter().rev() {
            let mut finite = [None, None];
            let mut checks = PointChecks::new(from_ms, to_ms);
            walk(std::slice::from_ref(c), &mut checks, |p| {
                kept += 1;
                if p.v.is_finite() {
                    finite = [Some(p.t), finite[0]];
                }
            })?;
            last_finite = match (last_finite, finite) {
                ([None, _], f) => f,
                ([Some(a), None], [Some(b), _]) => [Some(a), Some(b)],
                (l, _) => l,
            };
            decoded += 1;
            if last_finite[1].is_some() {
                break;
            }
        }
        if decoded == chunks.len() {
            samples = kept;
        }
        Ok(Checked::Chunks(Encoded {
            chunks,
            from_ms,
            to_ms,
            samples,
            last_finite,
            series: origin.map_or_else(String::new, |_| super::label_text(&series.labels)),
            origin: origin.cloned(),
        }))
    }

    /// How many samples the chunks hold: at least as many points as
    /// decoding gives.
    pub fn len(&self) -> usize {
        self.samples
    }

    /// Whether decoding gives no point.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// The timestamp of the `n`-th finite point from the end (`n` is 1 or
    /// 2), if there are that many.
    pub fn last_finite_t(&self, n: usize) -> Option<i64> {
        self.last_finite.get(n.checked_sub(1)?).copied().flatten()
    }

    /// The points, oldest first, without reporting what the checks find.
    pub fn decode(&self) -> Vec<Point> {
        self.decode_checked().0
    }

    /// The points, oldest first, with what the checks found counted under
    /// the query that read them; a corrupt chunk is counted and logged,
    /// and the points before it are kept.
    pub fn into_points(self) -> Vec<Point> {
        let (points, checks, error) = self.decode_checked();
        let Some(origin) = &self.origin else {
            return points;
        };
        checks.count_in(&origin.stats, &origin.query);
        if let Some(source) = error {
            let e = ReadError::Chunk {
                series: self.series,
                source,
            };
            origin
                .stats
                .problem_in(&origin.query, http::problem_reason(&e), 1);
            tracing::warn!(
                url = %origin.url,
                query = %origin.query,
                kept_points = points.len(),
                error = %e,
                "a chunk could not be decoded; the series' points from it on are left out of this read"
            );
        }
        points
    }

    /// Decodes every chunk: the points (sorted, should the chunks not
    /// follow each other after all), the checks' findings, and the error
    /// that stopped decoding, if any.
    fn decode_checked(&self) -> (Vec<Point>, PointChecks, Option<ChunkError>) {
        let mut checks = PointChecks::new(self.from_ms, self.to_ms);
        let mut points = Vec::with_capacity(self.samples);
        let error = walk(&self.chunks, &mut checks, |p| points.push(p)).err();
        if !checks.sorted {
            // Chunks whose announced times hid an overlap.
            points.sort_by_key(|p| p.t);
            points.dedup_by_key(|p| p.t);
        }
        (points, checks, error)
    }
}

/// `series` over `[from_ms, to_ms]` as a streamed read and then the job
/// using it take it, with nothing counted: the points and how many the
/// read announced, or the error that leaves the series out of the read.
/// For fuzzing what a read does with the chunks it is sent.
#[doc(hidden)]
pub fn read_and_decode(
    series: &proto::ChunkedSeries,
    from_ms: i64,
    to_ms: i64,
) -> Result<(Vec<Point>, usize), ReadError> {
    let samples = super::header_samples(series, from_ms, to_ms)?;
    let checked = Encoded::check(series, from_ms, to_ms, samples, None)
        .map_err(|e| super::chunk_error(series, e))?;
    Ok(match checked {
        Checked::Chunks(e) => (e.decode(), e.len()),
        Checked::Points(p, _) => {
            let n = p.len();
            (p, n)
        }
    })
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
    let samples = super::header_samples(&series, from_ms, to_ms).expect("XOR chunks");
    match Encoded::check(&series, from_ms, to_ms, samples, None) {
        Ok(Checked::Chunks(e)) => e,
        _ => panic!("points in time order make good chunks"),
    }
}

impl PartialEq for Encoded {
    fn eq(&self, other: &Self) -> bool {
        self.decode() == other.decode()
    }
}

/// Decodes `chunks` in order through `checks`, handing each point they
/// keep to `keep`; stops at the first unusable chunk.
#[inline(always)]
fn walk(
    chunks: &[Bytes],
    checks: &mut PointChecks,
    mut keep: impl FnMut(Point),
) -> Result<(), ChunkError> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{STALE_NAN_BITS, proto};
    use super::*;
    use crate::read::remote::xor::encoder::encode;

    /// A chunk announcing the true bounds of its samples, as a TSDB's do.
    fn chunk(samples: &[(i64, f64)]) -> proto::Chunk {
        let bits: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        proto::Chunk {
            min_time_ms: samples.iter().map(|s| s.0).min().unwrap_or(0),
            max_time_ms: samples.iter().map(|s| s.0).max().unwrap_or(0),
            r#type: proto::ChunkEncoding::Xor as i32,
            data: encode(&bits).into(),
        }
    }

    /// `c` without its last two bytes: its header promises samples it
    /// does not hold.
    fn cut_short(mut c: proto::Chunk) -> proto::Chunk {
        c.data.truncate(c.data.len() - 2);
        c
    }

    fn series(chunks: Vec<proto::Chunk>) -> proto::ChunkedSeries {
        proto::ChunkedSeries {
            labels: vec![proto::Label {
                name: "job".into(),
                value: "a".into(),
            }],
            chunks,
        }
    }

    fn pts(p: &[(i64, f64)]) -> Vec<Point> {
        p.iter().map(|&(t, v)| Point { t, v }).collect()
    }

    /// `Encoded::check` with the headers' count, as a read calls it.
    fn check(
        s: &proto::ChunkedSeries,
        from: i64,
        to: i64,
        origin: Option<&Arc<Origin>>,
    ) -> Result<Checked, ChunkError> {
        let samples = super::super::header_samples(s, from, to).expect("XOR chunks with headers");
        Encoded::check(s, from, to, samples, origin)
    }

    fn origin() -> Arc<Origin> {
        Arc::new(Origin {
            stats: Arc::new(ReadStats::default()),
            query: "q".into(),
            url: "http://prometheus/api/v1/read".into(),
        })
    }

    fn problems(o: &Origin) -> Vec<(String, &'static str, u64)> {
        o.stats.snapshot().problems
    }

    fn kept(checked: Checked) -> Encoded {
        match checked {
            Checked::Chunks(e) => e,
            Checked::Points(..) => panic!("chunks that follow each other are kept as chunks"),
        }
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
        let e = kept(check(&s, 1000, 5500, None).unwrap());
        assert_eq!(e.chunks.len(), 2);
        // Trimmed to the range, the staleness marker dropped, NaN kept.
        let got = e.decode();
        assert_eq!(got.len(), 4);
        assert_eq!(e.len(), 4, "both chunks were decoded: counted exactly");
        assert_eq!(got[..2], pts(&[(1000, 2.0), (2000, 3.0)])[..]);
        assert!(got[2].t == 3000 && got[2].v.is_nan());
        assert_eq!(got[3], Point { t: 4000, v: 5.0 });
        // The last finite points, latest first, found across the two last
        // chunks; the NaN does not count.
        assert_eq!(e.last_finite_t(1), Some(4000));
        assert_eq!(e.last_finite_t(2), Some(2000));
        assert_eq!(e.last_finite_t(3), None);
        assert_eq!(e.last_finite_t(0), None);
        assert!(!e.is_empty());
        // Over the whole range the two latest finite points are in the two
        // last chunks: the first is not decoded, and the headers count the
        // staleness marker too.
        let e = kept(check(&s, 0, 10_000, None).unwrap());
        assert_eq!(
            (e.last_finite_t(1), e.last_finite_t(2)),
            (Some(9000), Some(6000))
        );
        assert_eq!((e.len(), e.decode().len()), (8, 7));
    }

    #[test]
    fn overlapping_chunks_are_decoded_at_once_sorted_and_deduplicated() {
        let s = series(vec![
            chunk(&[(0, 1.0), (2000, 3.0)]),
            chunk(&[(1000, 2.0), (2000, 3.0), (3000, 4.0)]),
        ]);
        let Checked::Points(p, checks) = check(&s, 0, 10_000, None).unwrap() else {
            panic!("overlapping chunks are decoded at once");
        };
        assert!(!checks.sorted);
        assert_eq!(p, pts(&[(0, 1.0), (1000, 2.0), (2000, 3.0), (3000, 4.0)]));
    }

    #[test]
    fn a_corrupt_last_chunk_fails_the_check_and_a_series_out_of_range_is_empty() {
        let bad = cut_short(chunk(&[(0, 1.0), (1000, 2.0), (2000, 3.0)]));
        assert!(check(&series(vec![bad]), 0, 10_000, None).is_err());
        let e = kept(check(&series(vec![chunk(&[(0, 1.0)])]), 5000, 6000, None).unwrap());
        assert!(e.is_empty() && e.decode().is_empty() && e.last_finite_t(1).is_none());
    }

    #[test]
    fn a_corrupt_chunk_found_when_decoding_keeps_the_points_before_it_and_is_counted() {
        let bad = cut_short(chunk(&[(2000, 3.0), (3000, 4.0), (4000, 5.0)]));
        let s = series(vec![
            chunk(&[(0, 1.0), (1000, 2.0)]),
            bad,
            chunk(&[(5000, 6.0), (6000, 7.0)]),
        ]);
        let o = origin();
        // The read decodes the last chunk only: the series passes.
        let e = kept(check(&s, 0, 10_000, Some(&o)).unwrap());
        assert_eq!(e.last_finite_t(1), Some(6000));
        assert!(problems(&o).is_empty());
        // Looking at the points counts nothing.
        let looked = e.decode();
        assert!(problems(&o).is_empty());
        let got = e.into_points();
        assert_eq!(got, looked);
        assert_eq!(got[..2], pts(&[(0, 1.0), (1000, 2.0)])[..]);
        assert!(
            got.len() < 5 && got.iter().all(|p| p.t < 5000),
            "nothing from the corrupt chunk's end on: {got:?}"
        );
        assert_eq!(problems(&o), vec![("q".to_string(), "corrupt_chunk", 1)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever the chunks hold (times going back, NaN, staleness
        /// markers, infinities, chunks overlapping) and wherever the range
        /// falls, what the check tells of a series is what decoding gives.
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
            let to = from + span;
            let got = match check(&series(chunks), from, to, None).unwrap() {
                Checked::Chunks(e) => {
                    let got = e.decode();
                    proptest::prop_assert!(e.len() >= got.len());
                    proptest::prop_assert_eq!(e.is_empty(), got.is_empty());
                    let finite: Vec<i64> = got.iter().filter(|p| p.v.is_finite()).map(|p| p.t).collect();
                    proptest::prop_assert_eq!(e.last_finite_t(1), finite.last().copied());
                    proptest::prop_assert_eq!(e.last_finite_t(2), finite.iter().rev().nth(1).copied());
                    got
                }
                Checked::Points(p, _) => p,
            };
            proptest::prop_assert!(got.windows(2).all(|w| w[0].t < w[1].t));
            proptest::prop_assert!(got.iter().all(|p| p.t >= from && p.t <= to));
            proptest::prop_assert!(got.iter().all(|p| p.v.to_bits() != STALE_NAN_BITS));
        }
    }

    #[test]
    fn points_going_back_in_time_within_a_chunk_are_dropped_and_counted_when_decoded() {
        let s = series(vec![chunk(&[
            (0, 1.0),
            (2000, 2.0),
            (1000, 9.0),
            (3000, 3.0),
            (4000, f64::INFINITY),
        ])]);
        let o = origin();
        let e = kept(check(&s, 0, 10_000, Some(&o)).unwrap());
        assert!(problems(&o).is_empty(), "the read counts nothing");
        assert_eq!(
            e.into_points()[..3],
            pts(&[(0, 1.0), (2000, 2.0), (3000, 3.0)])[..]
        );
        assert_eq!(
            problems(&o),
            vec![
                ("q".to_string(), "infinite", 1),
                ("q".to_string(), "non_monotonic", 1)
            ]
        );
    }
}
