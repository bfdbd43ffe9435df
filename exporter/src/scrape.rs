//! One scrape: run the enabled collectors one after another, time each, serve
//! cached results to collectors with a polling interval, and merge everything
//! into one sorted list of families with the scrape self-metrics.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::collectors::Collector;
use crate::exposition::{Family, MetricType};

/// A collector as the scraper runs it.
pub struct Entry {
    name: String,
    collector: Box<dyn Collector>,
    interval: Option<Duration>,
    cache: Mutex<Option<Outcome>>,
}

#[derive(Clone)]
struct Outcome {
    at: Instant,
    families: Vec<Family>,
    duration: f64,
    ok: bool,
}

impl Entry {
    /// Wraps a collector; with an interval its result is reused until it is
    /// that old.
    pub fn new(
        name: impl Into<String>,
        collector: Box<dyn Collector>,
        interval: Option<Duration>,
    ) -> Entry {
        Entry {
            name: name.into(),
            collector,
            interval,
            cache: Mutex::new(None),
        }
    }

    /// The collector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn run(&self) -> Outcome {
        if let Some(interval) = self.interval {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(o) = cache.as_ref().filter(|o| o.at.elapsed() < interval) {
                return o.clone();
            }
        }
        let start = Instant::now();
        // A panicking collector is a bug, but it must not take the scrape down.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.collector.collect()));
        let duration = start.elapsed().as_secs_f64();
        let (families, ok) = match result {
            Ok(Ok(f)) => (f, true),
            Ok(Err(crate::collectors::CollectError::NoData(why))) => {
                tracing::debug!(collector = %self.name, reason = %why, "collector returned no data");
                (Vec::new(), false)
            }
            Ok(Err(e)) => {
                tracing::error!(collector = %self.name, error = %e, "collector failed");
                (Vec::new(), false)
            }
            Err(_) => {
                tracing::error!(collector = %self.name, "collector panicked");
                (Vec::new(), false)
            }
        };
        let outcome = Outcome {
            at: Instant::now(),
            families,
            duration,
            ok,
        };
        if self.interval.is_some() {
            *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome.clone());
        }
        outcome
    }
}

/// The set of enabled collectors and the way to scrape them.
pub struct Scraper {
    entries: Vec<Entry>,
}

impl Scraper {
    /// A scraper over the given collectors.
    pub fn new(entries: Vec<Entry>) -> Scraper {
        Scraper { entries }
    }

    /// Names of the collectors this scraper runs.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name())
    }

    /// Runs the collectors (only those named in `only`, when given, as
    /// node_exporter's `collect[]` parameter does) and returns their families
    /// merged and sorted by name, followed by the per-collector duration and
    /// success self-metrics.
    pub fn scrape(&self, only: Option<&[String]>) -> Vec<Family> {
        let selected: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| only.is_none_or(|names| names.iter().any(|n| n == &e.name)))
            .collect();
        // One after another on the calling thread. Most collectors read a
        // few small /proc or /sys files in tens of microseconds; handing
        // them to a thread pool (rayon's, before) cost more CPU in wake-ups
        // and idle spinning than it saved in latency, added threads (and
        // their malloc arenas) to the resident set, and on a busy 2-core
        // host made the tail latency worse, not better. A collector that
        // can hang (filesystem's statvfs) bounds itself with a timeout.
        // `run` catches panics, so none escapes.
        let outcomes: Vec<Outcome> = selected.iter().map(|e| e.run()).collect();

        let mut duration = Family::gauge(
            "node_scrape_collector_duration_seconds",
            "node_exporter: Duration of a collector scrape.",
        );
        let mut success = Family::gauge(
            "node_scrape_collector_success",
            "node_exporter: Whether a collector succeeded.",
        );
        let mut all = Vec::new();
        for (entry, outcome) in selected.iter().zip(outcomes) {
            duration.push([("collector", entry.name.as_str())], outcome.duration);
            success.push(
                [("collector", entry.name.as_str())],
                if outcome.ok { 1.0 } else { 0.0 },
            );
            all.extend(outcome.families);
        }
        all.push(duration);
        all.push(success);
        merge(all)
    }
}

/// Merges families of the same name (their types must agree; a clash keeps
/// the first and drops the other with a warning), drops repeated samples of
/// merged families, and sorts by name.
pub fn merge(mut families: Vec<Family>) -> Vec<Family> {
    // A stable sort keeps families of one name in the order given, so the
    // first of them is the one kept on a type clash; same-named families
    // end up next to each other and are joined in one pass, without a map
    // keyed by copies of the names.
    families.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<Family> = Vec::with_capacity(families.len());
    // Whether samples from several sources were joined into out[i].
    let mut joined: Vec<bool> = Vec::with_capacity(families.len());
    for f in families {
        match out.last_mut() {
            Some(existing) if existing.name == f.name => {
                if existing.kind == f.kind || f.kind == MetricType::Untyped {
                    existing.samples.extend(f.samples);
                    if let Some(j) = joined.last_mut() {
                        *j = true;
                    }
                } else {
                    tracing::warn!(
                        family = %f.name,
                        kept = %existing.kind,
                        dropped = %f.kind,
                        "two sources gave one metric family different types; dropped the second"
                    );
                }
            }
            _ => {
                out.push(f);
                joined.push(false);
            }
        }
    }
    // One source's family has no repeats (collectors and the textfile
    // parser guarantee it); only joined ones are checked.
    for (f, _) in out.iter_mut().zip(joined).filter(|(_, j)| *j) {
        let mut seen = HashSet::new();
        f.samples.retain(|s| {
            let mut key = s.labels.clone();
            key.sort();
            seen.insert((s.name.clone(), key))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::CollectError;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fixed(Result<f64, ()>, Arc<AtomicUsize>);
    impl Collector for Fixed {
        fn collect(&self) -> Result<Vec<Family>, CollectError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            match self.0 {
                Ok(v) => {
                    let mut f = Family::gauge("test_value", "A test value.");
                    f.push_value(v);
                    Ok(vec![f])
                }
                Err(()) => Err(CollectError::Other("broken".into())),
            }
        }
    }

    #[test]
    fn a_failing_collector_does_not_fail_the_scrape() {
        let n = Arc::new(AtomicUsize::new(0));
        let s = Scraper::new(vec![
            Entry::new("good", Box::new(Fixed(Ok(2.0), n.clone())), None),
            Entry::new("bad", Box::new(Fixed(Err(()), n.clone())), None),
        ]);
        let fams = s.scrape(None);
        let succ = fams
            .iter()
            .find(|f| f.name == "node_scrape_collector_success")
            .unwrap();
        let by: Vec<_> = succ
            .samples
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect();
        assert!(by.contains(&("good".into(), 1.0)) && by.contains(&("bad".into(), 0.0)));
        assert!(fams.iter().any(|f| f.name == "test_value"));
    }

    #[test]
    fn intervals_cache_results_and_collect_filters() {
        let n = Arc::new(AtomicUsize::new(0));
        let m = Arc::new(AtomicUsize::new(0));
        let s = Scraper::new(vec![
            Entry::new(
                "slow",
                Box::new(Fixed(Ok(1.0), n.clone())),
                Some(Duration::from_secs(60)),
            ),
            Entry::new("fast", Box::new(Fixed(Ok(1.0), m.clone())), None),
        ]);
        s.scrape(None);
        s.scrape(None);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(m.load(Ordering::SeqCst), 2);
        s.scrape(Some(&["fast".to_string()]));
        assert_eq!(m.load(Ordering::SeqCst), 3);
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn merge_joins_same_families_and_drops_duplicates() {
        let mut a = Family::gauge("x", "h");
        a.push([("k", "1")], 1.0);
        let mut b = Family::gauge("x", "h");
        b.push([("k", "1")], 5.0).push([("k", "2")], 2.0);
        let mut c = Family::counter("x", "h");
        c.push([("k", "3")], 3.0);
        let out = merge(vec![b, a, c]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples.len(), 2);
        assert_eq!(out[0].samples[0].value, 5.0);
    }

    #[test]
    fn merge_sorts_by_name_and_keeps_the_first_type_given() {
        let mut z = Family::counter("z", "h");
        z.push_value(1.0);
        let mut y_gauge = Family::gauge("y", "h");
        y_gauge.push([("k", "1")], 1.0);
        let mut y_counter = Family::counter("y", "h");
        y_counter.push([("k", "2")], 2.0);
        let mut a = Family::gauge("a", "h");
        a.push_value(3.0);
        let out = merge(vec![z, y_gauge, a, y_counter]);
        let names: Vec<_> = out.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "y", "z"]);
        assert_eq!(out[1].kind, MetricType::Gauge);
        assert_eq!(out[1].samples.len(), 1);
    }
}
