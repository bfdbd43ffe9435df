//! `bench-engine` (hidden): the analyzer's engine at scale. A generated
//! source serves `--series` gauges at `--step` (1 minute) over `--days` of
//! history; the engine fits every series on that history in its first cycle
//! (as a real first start does), then runs `--cycles` cycles one step apart,
//! each reading the new points (plus the lookback) and scoring them. Prints
//! one JSON line: initial fit time, CPU per steady cycle and the share of one
//! core it is at that interval, RSS per tracked series, and the time of one
//! periodic refit of every series (`fit_every`). Used by `bench/engine.py`.
//!
//! The source generates its answer on every read, as a remote-read answer
//! would be decoded afresh, so its memory is only the answer in flight.
//!
//! ```text
//! imd-analyzer bench-engine --series 10000 --days 7 --cycles 10 --models mad,drift
//! ```

use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::bench_read::process_cpu_seconds;
use crate::engine::{Engine, EngineOptions};
use crate::model::Point;
use crate::query::{Query, QueryConfig};
use crate::read::{Labels, ReadError, Selector, SeriesData, Source};

/// Flags of `bench-engine`.
#[derive(Debug, Args)]
pub struct BenchEngineArgs {
    /// Series served by the generated source.
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    /// Days of history each series has at the first cycle.
    #[arg(long, default_value_t = 7.0)]
    pub days: f64,
    /// Distance between samples, and between cycles.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub step: std::time::Duration,
    /// Steady-state cycles measured after the first one.
    #[arg(long, default_value_t = 10)]
    pub cycles: usize,
    /// Anomaly and forecast model, as `ANOMALY,FORECAST` (or one name for both).
    #[arg(long, default_value = "mad,drift")]
    pub models: String,
    /// Model window in points (default: the models' default).
    #[arg(long)]
    pub window: Option<usize>,
    /// Queries the series are split among (each selects one group).
    #[arg(long, default_value_t = 10)]
    pub queries: usize,
    /// Queries analysed at once (the run mode's default is 2).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Analyse only shard 0 of this many (see `--shard.count`).
    #[arg(long, default_value_t = 1)]
    pub shard_count: u64,
    /// Leave out the periodic refit of every series (about as long as the
    /// first fit; its figures are then null), e.g. to measure a restart at
    /// a scale where each fit takes half an hour.
    #[arg(long)]
    pub no_refit: bool,
    /// Save the model state in this directory and keep it there (by
    /// default it goes to a temporary directory, removed at the end), e.g.
    /// to look at what a series' state holds.
    #[arg(long, value_name = "DIR")]
    pub keep_state: Option<std::path::PathBuf>,
}

/// Gauges `bench_gauge{group="gK",instance="hI"}` generated on demand: a
/// daily cycle, a per-series level and deterministic noise.
struct Generated {
    /// Labels of every series and its index.
    series: Vec<(Labels, usize)>,
    step_ms: i64,
    /// No sample before this time.
    first_ms: i64,
}

impl Generated {
    fn value(i: usize, t_ms: i64) -> f64 {
        let day = 86_400_000.0;
        let phase = (t_ms as f64 / day + i as f64 / 97.0) * std::f64::consts::TAU;
        let mut h = (t_ms as u64 / 1000).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64);
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 32;
        let noise = (h >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        100.0 + (i % 50) as f64 + 10.0 * phase.sin() + 2.0 * noise
    }
}

impl Source for Generated {
    fn read(
        &self,
        selector: &Selector,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>, ReadError> {
        let from = from_ms.max(self.first_ms);
        let first = from.div_euclid(self.step_ms) + i64::from(from.rem_euclid(self.step_ms) != 0);
        let last = to_ms.div_euclid(self.step_ms);
        Ok(self
            .series
            .iter()
            .filter(|(labels, _)| selector.matches(labels))
            .map(|(labels, i)| SeriesData {
                labels: labels.clone(),
                points: (first..=last)
                    .map(|k| {
                        let t = k * self.step_ms;
                        Point {
                            t,
                            v: Generated::value(*i, t),
                        }
                    })
                    .collect(),
            })
            .collect())
    }
}

/// A value (KiB) from `/proc/self/status`.
pub(crate) fn status_kib(key: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in /proc/self/status"))
}

/// Runs `bench-engine`.
pub fn run(a: &BenchEngineArgs) -> anyhow::Result<()> {
    if a.series == 0 || a.queries == 0 || a.queries > a.series {
        anyhow::bail!(
            "--series and --queries must be at least 1, with no more queries than series"
        );
    }
    if a.days.is_nan() || a.days <= 0.0 {
        anyhow::bail!("--days must be positive");
    }
    if a.shard_count == 0 {
        anyhow::bail!("--shard-count must be at least 1");
    }
    let step_ms = i64::try_from(a.step.as_millis()).unwrap_or(i64::MAX);
    if step_ms < 1000 {
        anyhow::bail!("--step must be at least 1s");
    }
    let (anomaly, forecast) = match a.models.split_once(',') {
        Some((x, y)) => (x.trim(), y.trim()),
        None => (a.models.trim(), a.models.trim()),
    };
    let history_ms = (a.days * 86_400_000.0) as i64;
    // A fixed, step-aligned start, so that runs are comparable.
    let now0 = 1_800_000_000_000 - 1_800_000_000_000 % step_ms;
    let source = Generated {
        series: (0..a.series)
            .map(|i| {
                let mut l = vec![
                    ("__name__".to_string(), "bench_gauge".to_string()),
                    ("group".to_string(), format!("g{}", i % a.queries)),
                    ("instance".to_string(), format!("h{i}")),
                ];
                l.sort();
                (l, i)
            })
            .collect(),
        step_ms,
        first_ms: now0 - history_ms,
    };
    let mut queries = Vec::new();
    for g in 0..a.queries {
        let mut yaml = format!(
            "name: q{g}\nselector: 'bench_gauge{{group=\"g{g}\"}}'\nanomaly_model: {anomaly}\n\
             forecast_model: {forecast}\nhistory: {}s\n",
            history_ms / 1000 + 60
        );
        if let Some(w) = a.window {
            yaml.push_str(&format!("params:\n  window: {w}\n"));
        }
        let config: QueryConfig = serde_yaml_ng::from_str(&yaml).context("query settings")?;
        let q = Query::new(config).map_err(|(key, e)| anyhow::anyhow!("query {key}: {e}"))?;
        queries.push(q);
    }
    let options = EngineOptions {
        concurrency: a.concurrency,
        shard: (a.shard_count > 1).then_some((0, a.shard_count)),
        ..EngineOptions::default()
    };
    let mut engine = Engine::new(queries.clone(), options);
    let rss0 = status_kib("VmRSS")?;
    let cpu0 = process_cpu_seconds()?;
    let started = Instant::now();
    let first = engine.cycle(&source, now0);
    let fit_wall = started.elapsed().as_secs_f64();
    let fit_cpu = process_cpu_seconds()? - cpu0;
    let hwm_fit = status_kib("VmHWM")?;
    let tracked = engine.tracked().len();
    if tracked == 0 {
        anyhow::bail!("no series was fitted (models {anomaly}/{forecast})");
    }
    let mut cycle_cpu = Vec::new();
    let mut cycle_wall = Vec::new();
    let mut points = 0;
    for c in 1..=a.cycles {
        let cpu = process_cpu_seconds()?;
        let t = Instant::now();
        let r = engine.cycle(&source, now0 + c as i64 * step_ms);
        cycle_wall.push(t.elapsed().as_secs_f64());
        cycle_cpu.push(process_cpu_seconds()? - cpu);
        points += r.points;
        if r.read_errors > 0 {
            anyhow::bail!("cycle {c}: {} reads failed", r.read_errors);
        }
    }
    let rss = status_kib("VmRSS")?;
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let cpu_per_cycle = mean(&cycle_cpu);
    let cpu_cycle_max = cycle_cpu.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "fit {fit_cpu:.1} CPU s ({fit_wall:.1} s wall); {} cycles: {cpu_per_cycle:.3} CPU s each, {cpu_cycle_max:.3} at most; {:.1} MiB resident",
        a.cycles,
        rss as f64 / 1024.0
    );
    // One periodic refit of every series (as `fit_every` makes them): the
    // whole history read and every model fitted again, without the online
    // pass over the newest points that a first fit makes.
    let (refit_cpu, refit_wall) = if a.no_refit {
        (None, None)
    } else {
        engine.refit_next_cycle();
        let cpu = process_cpu_seconds()?;
        let t = Instant::now();
        let refit = engine.cycle(&source, now0 + (a.cycles as i64 + 1) * step_ms);
        let refit_wall = t.elapsed().as_secs_f64();
        let refit_cpu = process_cpu_seconds()? - cpu;
        if refit.fitted != tracked {
            anyhow::bail!(
                "the refit cycle fitted {} of {tracked} series",
                refit.fitted
            );
        }
        (Some(refit_cpu), Some(refit_wall))
    };
    let hwm_refit = status_kib("VmHWM")?;
    let restart_ms = now0 + (a.cycles as i64 + 2) * step_ms;
    let state = measure_state(
        &engine,
        queries,
        options,
        &source,
        restart_ms,
        a.keep_state.as_deref(),
    )?;
    let step_s = step_ms as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "series": a.series,
            "tracked": tracked,
            "history_points": history_ms / step_ms,
            "models": format!("{anomaly},{forecast}"),
            "window": a.window,
            "queries": a.queries,
            "shard_count": a.shard_count,
            "fit_wall_seconds": fit_wall,
            "fit_cpu_seconds": fit_cpu,
            "fit_model_seconds": first.model_seconds,
            "fitted": first.fitted,
            "cycles": a.cycles,
            "points_per_cycle": points as f64 / a.cycles.max(1) as f64,
            "cycle_cpu_seconds": cpu_per_cycle,
            // The models' own refits (each series at its own phase) are in
            // the mean as far as the cycles reach; the heaviest cycle shows
            // how evenly they are spread.
            "cycle_cpu_max_seconds": cpu_cycle_max,
            "cycle_wall_seconds": mean(&cycle_wall),
            "core_share_at_step": cpu_per_cycle / step_s,
            "refit_cpu_seconds": refit_cpu,
            "refit_wall_seconds": refit_wall,
            "rss_before_mib": rss0 as f64 / 1024.0,
            "rss_after_mib": rss as f64 / 1024.0,
            "hwm_mib": hwm_fit.max(hwm_refit) as f64 / 1024.0,
            "rss_per_series_kib": (rss.saturating_sub(rss0)) as f64 / tracked as f64,
            "state": state,
        })
    );
    Ok(())
}

/// Saving the engine's state (the run mode does every 5 minutes and at
/// shutdown), loading it into a new engine and that engine's first cycle at
/// `now_ms`, where every series resumes from its state on its history (a
/// restart): time, file size, and the memory each needs above what was
/// resident before it (peaks measured from a reset of the high-water mark).
fn measure_state(
    engine: &Engine,
    queries: Vec<Query>,
    options: EngineOptions,
    source: &dyn Source,
    now_ms: i64,
    keep: Option<&std::path::Path>,
) -> anyhow::Result<serde_json::Value> {
    let dir = keep.map_or_else(
        || std::env::temp_dir().join(format!("imd-bench-engine-{}", std::process::id())),
        std::path::Path::to_path_buf,
    );
    let file = crate::engine::persist::StateFile::in_dir(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let measured = (|| {
        let rss = reset_peak()?;
        let t = Instant::now();
        file.save(engine.saved()).context("saving the state")?;
        let save_wall = t.elapsed().as_secs_f64();
        let save_peak = status_kib("VmHWM")?.saturating_sub(rss);
        let bytes = std::fs::metadata(file.path())?.len();
        let rss = reset_peak()?;
        let t = Instant::now();
        let mut restarted = Engine::new(queries, options);
        let restored = restarted.restore(file.load());
        let load_wall = t.elapsed().as_secs_f64();
        let load_peak = status_kib("VmHWM")?.saturating_sub(rss);
        let held = status_kib("VmRSS")?.saturating_sub(rss);
        let cpu = process_cpu_seconds()?;
        let t = Instant::now();
        let resumed = restarted.cycle(source, now_ms);
        let resume_wall = t.elapsed().as_secs_f64();
        let resume_cpu = process_cpu_seconds()? - cpu;
        // The peak from before the load: the restart as a whole.
        let resume_peak = status_kib("VmHWM")?.saturating_sub(rss);
        let running = status_kib("VmRSS")?.saturating_sub(rss);
        if resumed.resumed != restored {
            anyhow::bail!(
                "{} of {restored} restored series resumed ({} refitted)",
                resumed.resumed,
                resumed.fitted
            );
        }
        anyhow::Ok(serde_json::json!({
            "series": restored,
            "file_bytes": bytes,
            "save_seconds": save_wall,
            "save_peak_mib": save_peak as f64 / 1024.0,
            "load_seconds": load_wall,
            "load_peak_mib": load_peak as f64 / 1024.0,
            "restored_held_mib": held as f64 / 1024.0,
            "resume_seconds": resume_wall,
            "resume_cpu_seconds": resume_cpu,
            "restart_peak_mib": resume_peak as f64 / 1024.0,
            "resumed_held_mib": running as f64 / 1024.0,
        }))
    })();
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    measured
}

/// Gives freed memory back and resets the process' resident high-water
/// mark (`VmHWM`) to its current resident size, which it returns (KiB).
fn reset_peak() -> anyhow::Result<u64> {
    // Memory freed before (and kept by the allocator) would otherwise be
    // reused unseen.
    crate::engine::memory::release_free();
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
    status_kib("VmRSS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_source_serves_the_step_grid_in_range() {
        let labels: Labels = vec![("__name__".into(), "bench_gauge".into())];
        let g = Generated {
            series: vec![(labels, 0)],
            step_ms: 60_000,
            first_ms: 120_000,
        };
        let sel = Selector::parse("bench_gauge").unwrap();
        let rows = g.read(&sel, 0, 300_001).unwrap();
        let ts: Vec<i64> = rows[0].points.to_points().iter().map(|p| p.t).collect();
        assert_eq!(ts, vec![120_000, 180_000, 240_000, 300_000]);
        let rows = g.read(&sel, 180_001, 240_000).unwrap();
        assert_eq!(rows[0].points.len(), 1);
        assert!(
            g.read(&Selector::parse("other").unwrap(), 0, 1)
                .unwrap()
                .is_empty()
        );
        assert_eq!(Generated::value(3, 60_000), Generated::value(3, 60_000));
    }

    #[test]
    fn fits_and_cycles_a_small_setup() {
        let a = BenchEngineArgs {
            series: 20,
            days: 0.1,
            step: std::time::Duration::from_secs(60),
            cycles: 2,
            models: "mad,drift".into(),
            window: None,
            queries: 2,
            concurrency: 2,
            shard_count: 1,
            no_refit: false,
            keep_state: None,
        };
        run(&a).unwrap();
        let bad = BenchEngineArgs { queries: 0, ..a };
        assert!(run(&bad).is_err());
    }
}
