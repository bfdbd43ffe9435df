//! `bench-read` (hidden): reads one selector over a time range through the
//! analyzer's own remote-read or query_range client, as the engine would,
//! and prints one JSON line with what came back and what it cost. Used by
//! `bench/remote_read.py` to compare the read paths against a real
//! Prometheus.
//!
//! ```text
//! imd-analyzer bench-read --url http://127.0.0.1:9090 --selector 'bench_gauge' \
//!     --from 1700000000000 --to 1700600000000 --mode chunks [--repeat 3]
//! ```
//!
//! The read's wall and CPU time are what the engine waits for before its
//! jobs start; `decode_*` is what those jobs then spend turning a streamed
//! answer's chunks into points (the other paths answer with points).
//!
//! `--dump-request FILE` also writes the snappy-compressed remote-read
//! request body of the `--mode` (samples or chunks) to FILE, so that a raw
//! HTTP client (curl) can send the very same request and only count bytes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use prost::Message;

use crate::read::promql::{PromqlOptions, QueryRange};
use crate::read::remote::proto::{ReadRequest, ResponseType};
use crate::read::remote::{RemoteRead, RemoteReadOptions, ResponseMode};
use crate::read::{Selector, Source};

/// Which read path to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Remote read, SAMPLES answer only.
    Samples,
    /// Remote read, STREAMED_XOR_CHUNKS preferred.
    Chunks,
    /// `GET /api/v1/query_range`, split as the analyzer splits it.
    #[value(name = "query_range")]
    QueryRange,
}

/// Flags of `bench-read`.
#[derive(Debug, Args)]
pub struct BenchReadArgs {
    /// The server's base URL, e.g. `http://127.0.0.1:9090` (`/api/v1/read`
    /// is appended for remote read).
    #[arg(long)]
    pub url: String,
    /// Series selector, e.g. `bench_gauge{job="x"}`.
    #[arg(long)]
    pub selector: String,
    /// Start of the range, milliseconds since the epoch.
    #[arg(long, allow_hyphen_values = true)]
    pub from: i64,
    /// End of the range, milliseconds since the epoch.
    #[arg(long, allow_hyphen_values = true)]
    pub to: i64,
    /// Read path.
    #[arg(long, value_enum)]
    pub mode: BenchMode,
    /// query_range step.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// Reads of the whole range, one after another (the figures are summed).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Largest accepted answer (query_range body or SAMPLES answer), MiB.
    #[arg(long, default_value_t = 2048)]
    pub max_response_mib: usize,
    /// Most samples one remote read takes in (the run mode's default is
    /// 20 million; the bench reads more at once).
    #[arg(long, default_value_t = 1_000_000_000)]
    pub max_samples: usize,
    /// Also write the compressed remote-read request body here.
    #[arg(long, value_name = "FILE")]
    pub dump_request: Option<PathBuf>,
}

/// CPU seconds (user + system) this process has used so far.
pub fn process_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    parse_cpu_seconds(&stat, imd_exporter::collectors::util::ticks_per_second())
        .context("parsing /proc/self/stat")
}

/// utime + stime of a `/proc/PID/stat` line, in seconds.
fn parse_cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. utime and stime are fields 14 and 15 (1-based), i.e.
    // the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks)
}

/// The remote-read request the client sends for this range, compressed.
fn request_body(selector: &Selector, mode: BenchMode, from: i64, to: i64) -> Vec<u8> {
    let accepted = match mode {
        BenchMode::Samples => vec![ResponseType::Samples as i32],
        _ => vec![
            ResponseType::StreamedXorChunks as i32,
            ResponseType::Samples as i32,
        ],
    };
    let req = ReadRequest {
        queries: vec![crate::read::remote::query(selector, from, to)],
        accepted_response_types: accepted,
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap_or_default()
}

/// Runs `bench-read` on its own thread: reqwest's blocking client must not
/// run (or be dropped) on the async runtime `main` starts.
pub fn run(a: &BenchReadArgs) -> anyhow::Result<()> {
    std::thread::scope(|s| match s.spawn(|| run_blocking(a)).join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    })
}

fn run_blocking(a: &BenchReadArgs) -> anyhow::Result<()> {
    let selector = Selector::parse(&a.selector)
        .map_err(|e| anyhow::anyhow!("--selector {:?}: {e}", a.selector))?;
    if a.from > a.to {
        anyhow::bail!("--from {} is after --to {}", a.from, a.to);
    }
    if a.repeat == 0 {
        anyhow::bail!("--repeat must be at least 1");
    }
    let base = a.url.trim_end_matches('/').to_string();
    let max_bytes = a.max_response_mib.max(1) << 20;
    let (source, stats): (Box<dyn Source>, _) = match a.mode {
        BenchMode::Samples | BenchMode::Chunks => {
            let mut o = RemoteReadOptions::new(format!("{base}/api/v1/read"));
            o.mode = if a.mode == BenchMode::Samples {
                ResponseMode::Samples
            } else {
                ResponseMode::PreferStreamed
            };
            o.max_response_bytes = max_bytes;
            o.max_samples = a.max_samples;
            o.http.timeout = Duration::from_secs(600);
            let s = RemoteRead::new(&o)?;
            let stats = s.stats();
            (Box::new(s), stats)
        }
        BenchMode::QueryRange => {
            let mut o = PromqlOptions::new(base.clone(), a.step);
            o.max_response_bytes = max_bytes;
            o.http.timeout = Duration::from_secs(600);
            let s = QueryRange::new(&o)?;
            let stats = s.stats();
            (Box::new(s), stats)
        }
    };
    if let Some(path) = &a.dump_request {
        if a.mode == BenchMode::QueryRange {
            anyhow::bail!("--dump-request is for the remote-read modes");
        }
        std::fs::write(path, request_body(&selector, a.mode, a.from, a.to))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let cpu0 = process_cpu_seconds()?;
    let started = Instant::now();
    let (mut series, mut points) = (0usize, 0usize);
    let mut rows = Vec::new();
    for _ in 0..a.repeat {
        rows = source.read(&selector, a.from, a.to)?;
        series = rows.len();
        points += rows.iter().map(|r| r.points.len()).sum::<usize>();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds()? - cpu0;
    // What the engine's jobs then do with the last read: streamed series
    // come as checked chunks and are decoded into points there, on every
    // core (the other paths come decoded, and this costs nothing).
    let cpu0 = process_cpu_seconds()?;
    let started = Instant::now();
    let decoded: usize = {
        use rayon::prelude::*;
        rows.into_par_iter()
            .map(|r| r.points.into_points().len())
            .sum()
    };
    let decode_wall = started.elapsed().as_secs_f64();
    let decode_cpu = process_cpu_seconds()? - cpu0;
    // Series still in chunks announce the samples their chunks hold, a
    // few more than the points when the range cuts chunks.
    anyhow::ensure!(
        decoded * a.repeat as usize <= points,
        "the series decoded into {decoded} points, the read announced {}",
        points / a.repeat as usize
    );
    let points = decoded * a.repeat as usize;
    let st = stats.snapshot();
    let mode = match a.mode {
        BenchMode::Samples => "samples",
        BenchMode::Chunks => "chunks",
        BenchMode::QueryRange => "query_range",
    };
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "repeat": a.repeat,
            "series": series,
            "points": points,
            "samples_decoded": st.samples_decoded,
            "bytes": st.bytes_read,
            "streamed_answers": st.streamed_answers,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "decode_wall_seconds": decode_wall,
            "decode_cpu_seconds": decode_cpu,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_read_after_the_command_name() {
        let line = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_cpu_seconds(line, 100.0), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage", 100.0), None);
        assert!(process_cpu_seconds().unwrap() >= 0.0);
    }

    #[test]
    fn dumped_request_decodes_to_the_range_and_matchers() {
        let sel = Selector::parse(r#"up{job="a"}"#).unwrap();
        let body = request_body(&sel, BenchMode::Samples, 10, 20);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = ReadRequest::decode(&raw[..]).unwrap();
        assert_eq!(req.accepted_response_types, vec![0]);
        assert_eq!(req.queries[0].start_timestamp_ms, 10);
        assert_eq!(req.queries[0].matchers.len(), 2);
        let chunks = request_body(&sel, BenchMode::Chunks, 10, 20);
        let raw = snap::raw::Decoder::new().decompress_vec(&chunks).unwrap();
        assert_eq!(
            ReadRequest::decode(&raw[..])
                .unwrap()
                .accepted_response_types,
            vec![1, 0]
        );
    }
}
