//! A sharded replica's reads: only the series its shard owns, rather than
//! every series of the selector with the others thrown away afterwards.
//!
//! The series are first listed without samples ([`super::listing`]), the
//! owners computed with the same stable hash as everywhere else
//! ([`crate::shard::owner`]), and only the owned series read, each by an
//! exact selector: its labels by equality, and every other label name seen
//! in the listing as absent (`name=""`), so that a series whose labels are
//! a superset of another's is not read along with it. The exact selectors
//! are sent in batches (several queries in one remote-read request, or one
//! PromQL `or` for query_range).
//!
//! A listing serves the later reads of the same selector for
//! [`LISTING_FRESH_FOR`] (the exact selectors of the owned series are
//! kept, built once), so that a replica does not list every series of its queries at
//! every cycle: a series that appears meanwhile is read from the next
//! listing on.
//!
//! When listing is not possible (no series API next to the read endpoint,
//! or it refuses or misanswers), the replica reads everything and keeps
//! its own series, as before, and tries listing again after
//! [`RETRY_LISTING_AFTER`]; each read counts which way it went
//! ([`ShardPath`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::ReadStats;
use super::{Labels, ReadError, Selector, SeriesData};
use crate::shard::Owner;

/// How a sharded read went, for `imd_read_shard_reads_total{path}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPath {
    /// The series were listed and only the owned ones read.
    Listed,
    /// Everything was read and the other shards' series left out.
    Filtered,
}

impl ShardPath {
    /// Every path, in the order of [`super::http::ReadStatsSnapshot::shard_reads`].
    pub const ALL: [ShardPath; 2] = [ShardPath::Listed, ShardPath::Filtered];

    /// The `path` label value.
    pub fn name(self) -> &'static str {
        match self {
            ShardPath::Listed => "listed",
            ShardPath::Filtered => "filtered",
        }
    }
}

/// How a source sends several exact selectors at once.
#[derive(Debug, Clone, Copy)]
pub enum Batching {
    /// Up to this many selectors per request, each its own query
    /// (remote read: one `ReadRequest` carries several queries).
    Queries(usize),
    /// Selectors joined by PromQL's `or`, up to about this many characters
    /// per expression. `or` keeps one of two series whose labels differ in
    /// the metric name only, so such series go to different expressions.
    Or(usize),
}

/// How long a source whose listing failed (other than by an outage) is
/// read whole before listing is tried again: long enough that a back end
/// without a series API costs one refused request now and then, short
/// enough that a fixed one is used again soon.
pub const RETRY_LISTING_AFTER: Duration = Duration::from_secs(600);

/// How long a listing serves later reads of the same selector: five
/// minutes, Prometheus' default lookback delta, as long as a series that
/// vanished takes to go stale.
pub const LISTING_FRESH_FOR: Duration = Duration::from_secs(300);

/// What a listing leaves for later reads: the exact selectors of the
/// owned series, in the source's batches.
#[derive(Debug)]
struct Listed {
    at: Instant,
    batches: Vec<Vec<Selector>>,
    /// Whether the selector matched any series at all.
    any: bool,
}

/// A selector's listing, by its PromQL text and the owner.
type ListingKey = (String, Owner);

/// Per source: since when listing is known not to work there, and the
/// latest listing of each selector.
#[derive(Debug, Default)]
pub struct Pushdown {
    failed_at: Mutex<Option<Instant>>,
    listings: Mutex<HashMap<ListingKey, Arc<Listed>>>,
}

impl Pushdown {
    /// Whether listing failed less than [`RETRY_LISTING_AFTER`] ago
    /// (reads then filter).
    pub fn is_unavailable(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < RETRY_LISTING_AFTER)
    }

    fn set_failed(&self, failed: bool) {
        *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = failed.then(Instant::now);
    }

    /// The selector's listing if it is fresh enough to serve.
    fn fresh(&self, key: &ListingKey) -> Option<Arc<Listed>> {
        let mut listings = self.listings.lock().unwrap_or_else(|e| e.into_inner());
        listings.retain(|_, l| l.at.elapsed() < LISTING_FRESH_FOR);
        listings.get(key).cloned()
    }

    fn keep(&self, key: ListingKey, listed: Arc<Listed>) {
        self.listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, listed);
    }

    /// Drops the kept listings (the next reads list again).
    #[cfg(test)]
    fn forget_listings(&self) {
        self.listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// What a source offers a sharded read of one selector over one time
/// range (it keeps its running tally of bytes and samples itself).
pub trait ShardedSource {
    /// The label sets of the selector's series; `None` when the source
    /// has no way to list them.
    fn list(&mut self) -> Option<Result<Vec<Labels>, ReadError>>;

    /// The series of a batch of selectors, in one request.
    fn read_batch(&mut self, selectors: &[Selector]) -> Result<Vec<SeriesData>, ReadError>;
}

/// The series of `selector` that `owner` keeps, read from `source` with
/// its `pushdown` state. Also says whether the selector matched any
/// series at all (an answer with no series at all is counted as `empty`
/// by the sources).
pub fn read_owned(
    pushdown: &Pushdown,
    stats: &ReadStats,
    owner: &Owner,
    selector: &Selector,
    batching: Batching,
    source: &mut dyn ShardedSource,
) -> Result<(Vec<SeriesData>, bool), ReadError> {
    let key = (super::promql::promql_selector(selector), owner.clone());
    if let Some(listed) = pushdown.fresh(&key) {
        stats.record_shard_path(ShardPath::Listed);
        return read_listed(&listed, owner, source);
    }
    let listing = if pushdown.is_unavailable() {
        None
    } else {
        source.list()
    };
    let listed = match listing {
        None => None,
        Some(listing) => match listing {
            Ok(l) => {
                pushdown.set_failed(false);
                Some(l)
            }
            // The server is down: reading everything would fail the same.
            Err(e) if e.is_outage() => return Err(e),
            Err(e) => {
                pushdown.set_failed(true);
                tracing::warn!(
                    error = %e,
                    retry_in_seconds = RETRY_LISTING_AFTER.as_secs(),
                    "listing series failed; this source's sharded reads read every series and keep this shard's until listing is tried again"
                );
                None
            }
        },
    };
    let Some(listed) = listed else {
        stats.record_shard_path(ShardPath::Filtered);
        let all = source.read_batch(std::slice::from_ref(selector))?;
        let any = !all.is_empty();
        return Ok((keep_owned(all, owner), any));
    };
    stats.record_shard_path(ShardPath::Listed);
    let names: BTreeSet<&str> = listed
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k.as_str()))
        .collect();
    let owned: Vec<&Labels> = listed.iter().filter(|l| owner.owns(l)).collect();
    let listed = Arc::new(Listed {
        at: Instant::now(),
        batches: batches(&owned, &names, batching),
        any: !listed.is_empty(),
    });
    pushdown.keep(key, listed.clone());
    read_listed(&listed, owner, source)
}

/// Reads the owned series of a listing by its exact selectors.
fn read_listed(
    listed: &Listed,
    owner: &Owner,
    source: &mut dyn ShardedSource,
) -> Result<(Vec<SeriesData>, bool), ReadError> {
    let mut out = Vec::new();
    for batch in &listed.batches {
        out.extend(source.read_batch(batch)?);
    }
    // A series that appeared after the listing may match an exact selector
    // (its labels a superset of a listed series' with a new name): it is
    // kept only if owned, and once.
    let mut out = keep_owned(out, owner);
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out.dedup_by(|a, b| a.labels == b.labels);
    Ok((out, listed.any))
}

fn keep_owned(series: Vec<SeriesData>, owner: &Owner) -> Vec<SeriesData> {
    series
        .into_iter()
        .filter(|s| owner.owns(&s.labels))
        .collect()
}

/// The selector of exactly the series with `labels` among those with the
/// label `names`: equality on its labels, absence of the other names.
pub fn exact_selector(labels: &Labels, names: &BTreeSet<&str>) -> Selector {
    let mut pairs = labels.clone();
    for n in names {
        if !labels.iter().any(|(k, _)| k == n) {
            pairs.push((n.to_string(), String::new()));
        }
    }
    Selector::exact(&pairs)
}

/// The exact selectors of `owned` in batches as `batching` says; `names`
/// are the label names of every series listed.
pub fn batches(
    owned: &[&Labels],
    names: &BTreeSet<&str>,
    batching: Batching,
) -> Vec<Vec<Selector>> {
    match batching {
        Batching::Queries(n) => owned
            .chunks(n.max(1))
            .map(|c| c.iter().map(|l| exact_selector(l, names)).collect())
            .collect(),
        Batching::Or(max_chars) => {
            let mut left: Vec<(&Labels, Selector, usize)> = owned
                .iter()
                .map(|l| {
                    let s = exact_selector(l, names);
                    let len = super::promql::promql_selector(&s).len();
                    (*l, s, len)
                })
                .collect();
            let mut out = Vec::new();
            while !left.is_empty() {
                let mut batch = Vec::new();
                let mut chars = 0;
                let mut keys: HashSet<Vec<&(String, String)>> = HashSet::new();
                let mut later = Vec::new();
                for (labels, sel, len) in left {
                    let key: Vec<&(String, String)> =
                        labels.iter().filter(|(k, _)| k != "__name__").collect();
                    let fits = batch.is_empty() || chars + len + 4 <= max_chars;
                    if fits && !keys.contains(&key) {
                        keys.insert(key);
                        chars += len + 4;
                        batch.push(sel);
                    } else {
                        later.push((labels, sel, len));
                    }
                }
                out.push(batch);
                left = later;
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Point;
    use crate::shard::Shard;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        let mut v: Labels = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    fn series(labels: &Labels) -> SeriesData {
        SeriesData {
            labels: labels.clone(),
            points: vec![Point { t: 1, v: 1.0 }].into(),
        }
    }

    /// How the fake lists: all its series, a refusal, an outage, or not
    /// at all.
    #[derive(Clone, Copy)]
    enum Listing {
        All,
        Refused,
        Down,
        Cannot,
    }

    /// A fake source over `all`: answers selectors with the matching
    /// series and counts the series it sent.
    struct Fake {
        all: Vec<Labels>,
        listing: Listing,
        sent: usize,
        requests: usize,
        lists: usize,
    }

    impl Fake {
        fn new(listing: Listing) -> Fake {
            Fake {
                all: all_series(),
                listing,
                sent: 0,
                requests: 0,
                lists: 0,
            }
        }
    }

    impl ShardedSource for Fake {
        fn list(&mut self) -> Option<Result<Vec<Labels>, ReadError>> {
            self.lists += 1;
            match self.listing {
                Listing::All => Some(Ok(self.all.clone())),
                Listing::Refused => Some(Err(ReadError::Status {
                    url: "u".into(),
                    status: 404,
                    body: "not found".into(),
                })),
                Listing::Down => Some(Err(ReadError::Unavailable("down".into()))),
                Listing::Cannot => None,
            }
        }

        fn read_batch(&mut self, sels: &[Selector]) -> Result<Vec<SeriesData>, ReadError> {
            self.requests += 1;
            let mut out = Vec::new();
            for s in sels {
                for l in &self.all {
                    if s.matches(l) {
                        out.push(series(l));
                    }
                }
            }
            self.sent += out.len();
            Ok(out)
        }
    }

    fn all_series() -> Vec<Labels> {
        let mut all: Vec<Labels> = (0..60)
            .map(|i| l(&[("__name__", "x"), ("instance", &format!("h{i}"))]))
            .collect();
        // A superset of h0's labels, and one differing only in the name.
        all.push(l(&[("__name__", "x"), ("instance", "h0"), ("extra", "1")]));
        all.push(l(&[("__name__", "y"), ("instance", "h0")]));
        all
    }

    #[test]
    fn a_multivariate_owner_reads_whole_groups_of_its_own() {
        // Grouped by instance: x and y of h0 (and h0's superset) belong
        // together, so one replica reads all three or none of them.
        let sel = Selector::parse(r#"{instance=~"h.*"}"#).unwrap();
        let by = vec!["instance".to_string()];
        let mut union = Vec::new();
        for index in 0..3 {
            let owner = Owner {
                shard: Shard { index, count: 3 },
                by: Some(by.clone()),
            };
            let mut f = Fake::new(Listing::All);
            let stats = ReadStats::default();
            let (got, _) = read_owned(
                &Pushdown::default(),
                &stats,
                &owner,
                &sel,
                Batching::Queries(7),
                &mut f,
            )
            .unwrap();
            let mine = all_series()
                .into_iter()
                .filter(|l| owner.shard.owns(&crate::shard::group_key(l, &by)))
                .count();
            assert_eq!(got.len(), mine);
            assert_eq!(f.sent, mine, "only the owned groups' series are read");
            let h0 = got
                .iter()
                .filter(|s| s.labels.contains(&("instance".into(), "h0".into())))
                .count();
            assert!(h0 == 0 || h0 == 3, "h0's group is split: {h0}");
            union.extend(got.into_iter().map(|s| s.labels));
        }
        union.sort();
        let mut want = all_series();
        want.sort();
        assert_eq!(union, want, "every series read by exactly one replica");
    }

    #[test]
    fn listed_reads_cover_each_series_once_and_read_only_owned_ones() {
        let sel = Selector::parse(r#"{instance=~"h.*"}"#).unwrap();
        let count = 3;
        for batching in [Batching::Queries(7), Batching::Or(200)] {
            let mut union = Vec::new();
            for index in 0..count {
                let shard = Shard { index, count };
                let stats = ReadStats::default();
                let mut f = Fake::new(Listing::All);
                let (got, any) = read_owned(
                    &Pushdown::default(),
                    &stats,
                    &shard.into(),
                    &sel,
                    batching,
                    &mut f,
                )
                .unwrap();
                assert!(any);
                let owned = all_series().iter().filter(|l| shard.owns(l)).count();
                assert_eq!(got.len(), owned, "{batching:?}");
                assert_eq!(f.sent, owned, "{batching:?}: only owned series read");
                assert!(f.requests < owned, "{batching:?}: batched");
                union.extend(got.into_iter().map(|s| s.labels));
                assert_eq!(
                    stats.snapshot().shard_reads,
                    vec![("listed", 1), ("filtered", 0)]
                );
            }
            union.sort();
            let mut want = all_series();
            want.sort();
            assert_eq!(union, want, "{batching:?}");
        }
    }

    #[test]
    fn a_listing_serves_later_reads_until_it_is_renewed() {
        let sel = Selector::parse(r#"{instance=~"h.*"}"#).unwrap();
        let shard = Shard { index: 0, count: 3 };
        let stats = ReadStats::default();
        let p = Pushdown::default();
        let mut f = Fake::new(Listing::All);
        let read = |f: &mut Fake, shard: Shard| {
            read_owned(&p, &stats, &shard.into(), &sel, Batching::Queries(7), f).unwrap()
        };
        let (first, _) = read(&mut f, shard);
        // A series that appears after the listing ...
        let mut newcomer = (100..)
            .map(|i| l(&[("__name__", "x"), ("instance", &format!("h{i}"))]))
            .find(|l| shard.owns(l))
            .unwrap();
        f.all.push(newcomer.clone());
        let (second, any) = read(&mut f, shard);
        assert!(any);
        assert_eq!(f.lists, 1, "the second read used the first listing");
        assert_eq!(second, first, "... is not read from the kept listing");
        // Another shard or selector has a listing of its own.
        let other = Shard { index: 1, count: 3 };
        read(&mut f, other);
        assert_eq!(f.lists, 2);
        // Once the listing is renewed, it is.
        p.forget_listings();
        let (third, _) = read(&mut f, shard);
        assert_eq!(f.lists, 3);
        assert_eq!(third.len(), first.len() + 1);
        newcomer.sort();
        assert!(third.iter().any(|s| s.labels == newcomer));
        assert_eq!(
            stats.snapshot().shard_reads,
            vec![("listed", 4), ("filtered", 0)]
        );
    }

    #[test]
    fn without_listing_everything_is_read_and_filtered() {
        let sel = Selector::parse("x").unwrap();
        let shard = Shard { index: 1, count: 3 };
        let stats = ReadStats::default();
        let pushdown = Pushdown::default();
        let mut sent = 0;
        // Refused: listing is given up for this source (the second read
        // does not ask again); cannot: never tried.
        for listing in [Listing::Refused, Listing::All, Listing::Cannot] {
            let p = if matches!(listing, Listing::Cannot) {
                &Pushdown::default()
            } else {
                &pushdown
            };
            let mut f = Fake::new(listing);
            let (got, _) = read_owned(
                p,
                &stats,
                &shard.into(),
                &sel,
                Batching::Queries(10),
                &mut f,
            )
            .unwrap();
            assert!(got.iter().all(|s| shard.owns(&s.labels)));
            assert!(!got.is_empty());
            sent += f.sent;
        }
        assert!(pushdown.is_unavailable());
        assert_eq!(sent, 3 * 61, "every x series read, three times");
        assert_eq!(
            stats.snapshot().shard_reads,
            vec![("listed", 0), ("filtered", 3)]
        );
        // An outage is the read's failure, not a reason to stop listing.
        let p = Pushdown::default();
        let mut f = Fake::new(Listing::Down);
        let e = read_owned(
            &p,
            &stats,
            &shard.into(),
            &sel,
            Batching::Queries(10),
            &mut f,
        )
        .unwrap_err();
        assert_eq!(e.kind(), "unavailable");
        assert!(!p.is_unavailable());
    }

    #[test]
    fn exact_selectors_exclude_supersets_and_or_batches_keep_names_apart() {
        let all = all_series();
        let names: BTreeSet<&str> = all
            .iter()
            .flat_map(|l| l.iter().map(|(k, _)| k.as_str()))
            .collect();
        let h0 = l(&[("__name__", "x"), ("instance", "h0")]);
        let s = exact_selector(&h0, &names);
        let matched: Vec<&Labels> = all.iter().filter(|x| s.matches(x)).collect();
        assert_eq!(matched, vec![&h0]);
        let y = l(&[("__name__", "y"), ("instance", "h0")]);
        let owned = vec![&h0, &y];
        let b = batches(&owned, &names, Batching::Or(10_000));
        assert_eq!(b.len(), 2, "x and y with the same other labels split");
        let owned: Vec<&Labels> = all.iter().collect();
        for batch in batches(&owned, &names, Batching::Or(300)) {
            let text: Vec<String> = batch
                .iter()
                .map(super::super::promql::promql_selector)
                .collect();
            assert!(batch.len() == 1 || text.join(" or ").len() <= 300);
        }
    }
}
