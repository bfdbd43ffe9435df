//! `stat`: kernel counters from /proc/stat (boot time, context switches,
//! forks, interrupts, runnable and blocked processes, optionally softirqs per
//! vector), named as node_exporter's stat collector names them.
//!
//! The /proc/stat parser here is shared with the `cpu` collector. The
//! `procfs` crate's `KernelStats` is not used because it keeps the per-CPU
//! lines as a plain list, losing the CPU numbers (which have gaps when CPUs
//! are offline), and it does not expose the interrupt total.

use std::path::Path;

use super::cpu::{bool_option, bool_option_args};
use super::util::{parse_error, read_string};
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "stat",
    help: "Kernel counters from /proc/stat (boot time, context switches, forks, interrupts, procs)",
    default_enabled: true,
    configured: super::not_configured,
    flags,
    build,
};

const SOFTIRQ_FLAG: &str = "collector.stat.softirq";

fn flags() -> Vec<clap::Arg> {
    bool_option_args(
        SOFTIRQ_FLAG,
        "Export softirq calls per vector (node_softirqs_total)",
        false,
    )
    .into()
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(StatCollector {
        paths: ctx.paths.clone(),
        softirq: bool_option(ctx.matches, SOFTIRQ_FLAG, false),
    }))
}

/// The softirq vectors in the order of /proc/stat's `softirq` line, with
/// node_exporter's names for them.
const SOFTIRQ_VECTORS: [&str; 10] = [
    "hi",
    "timer",
    "net_tx",
    "net_rx",
    "block",
    "block_iopoll",
    "tasklet",
    "sched",
    "hrtimer",
    "rcu",
];

/// One `cpuN` line of /proc/stat.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CpuLine {
    /// The CPU number as written after `cpu` (e.g. `"0"`).
    pub id: String,
    /// user, nice, system, idle, iowait, irq, softirq, steal, guest,
    /// guest_nice in ticks; fields an older kernel does not write are 0.
    pub ticks: [u64; 10],
}

/// The parts of /proc/stat the `stat` and `cpu` collectors use. Lines
/// missing from the file stay `None`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcStat {
    /// Per-CPU lines (the aggregate `cpu` line is skipped).
    pub cpus: Vec<CpuLine>,
    /// Total interrupts serviced (first number of `intr`).
    pub intr: Option<u64>,
    /// Context switches (`ctxt`).
    pub ctxt: Option<u64>,
    /// Boot time in seconds since the epoch (`btime`).
    pub btime: Option<u64>,
    /// Forks since boot (`processes`).
    pub processes: Option<u64>,
    /// Runnable processes (`procs_running`).
    pub procs_running: Option<u64>,
    /// Processes blocked on I/O (`procs_blocked`).
    pub procs_blocked: Option<u64>,
    /// Per-vector softirq counts (the `softirq` line without its total).
    pub softirq: Option<Vec<u64>>,
}

/// Parses /proc/stat; `path` is only used in error messages.
pub(crate) fn parse_proc_stat(path: &Path, text: &str) -> Result<ProcStat, CollectError> {
    let mut out = ProcStat::default();
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else { continue };
        let number = |s: &str| -> Result<u64, CollectError> {
            s.parse::<u64>().map_err(|_| {
                parse_error(
                    path,
                    lineno,
                    format!("{key}: expected a whole number, found {s:?}"),
                )
            })
        };
        let first = |fields: &mut std::str::SplitWhitespace| -> Result<u64, CollectError> {
            match fields.next() {
                Some(s) => number(s),
                None => Err(parse_error(path, lineno, format!("{key}: missing value"))),
            }
        };
        match key {
            "cpu" => {}
            k if k.starts_with("cpu") => {
                let id = &k[3..];
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(parse_error(
                        path,
                        lineno,
                        format!("unexpected CPU name {k:?}"),
                    ));
                }
                let values: Vec<u64> = fields.map(number).collect::<Result<_, _>>()?;
                // user, nice, system and idle exist in every kernel; the rest
                // were added over time (iowait 2.5.41 ... guest_nice 2.6.33).
                if values.len() < 4 {
                    return Err(parse_error(
                        path,
                        lineno,
                        format!(
                            "{k}: expected at least 4 time fields, found {}",
                            values.len()
                        ),
                    ));
                }
                let mut ticks = [0u64; 10];
                for (slot, v) in ticks.iter_mut().zip(values) {
                    *slot = v;
                }
                out.cpus.push(CpuLine {
                    id: id.to_string(),
                    ticks,
                });
            }
            "intr" => out.intr = Some(first(&mut fields)?),
            "ctxt" => out.ctxt = Some(first(&mut fields)?),
            "btime" => out.btime = Some(first(&mut fields)?),
            "processes" => out.processes = Some(first(&mut fields)?),
            "procs_running" => out.procs_running = Some(first(&mut fields)?),
            "procs_blocked" => out.procs_blocked = Some(first(&mut fields)?),
            "softirq" => {
                first(&mut fields)?; // the total; the vectors follow
                out.softirq = Some(fields.map(number).collect::<Result<_, _>>()?);
            }
            _ => {}
        }
    }
    Ok(out)
}

struct StatCollector {
    paths: Paths,
    softirq: bool,
}

impl Collector for StatCollector {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let path = self.paths.proc("stat");
        let stat = parse_proc_stat(&path, &read_string(&path)?)?;
        let mut out = Vec::new();
        let mut single = |value: Option<u64>, family: fn() -> Family| {
            if let Some(v) = value {
                let mut f = family();
                f.push_value(v as f64);
                out.push(f);
            }
        };
        single(stat.intr, || {
            Family::counter("node_intr_total", "Total number of interrupts serviced.")
        });
        single(stat.ctxt, || {
            Family::counter(
                "node_context_switches_total",
                "Total number of context switches.",
            )
        });
        single(stat.processes, || {
            Family::counter("node_forks_total", "Total number of forks.")
        });
        single(stat.btime, || {
            Family::gauge("node_boot_time_seconds", "Node boot time, in unixtime.")
        });
        single(stat.procs_running, || {
            Family::gauge(
                "node_procs_running",
                "Number of processes in runnable state.",
            )
        });
        single(stat.procs_blocked, || {
            Family::gauge(
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
            )
        });
        if out.is_empty() {
            return Err(CollectError::Parse {
                path,
                message: "none of intr, ctxt, btime, processes, procs_running, procs_blocked found"
                    .into(),
            });
        }
        if self.softirq {
            if let Some(counts) = &stat.softirq {
                let mut f = Family::counter("node_softirqs_total", "Number of softirq calls.");
                for (vector, n) in SOFTIRQ_VECTORS.iter().zip(counts) {
                    f.push([("vector", *vector)], *n as f64);
                }
                out.push(f);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/stat of a 2-CPU Debian 12 VM (the `intr` line shortened).
    pub(crate) const PROC_STAT: &str = "\
cpu  15177 0 2627 73922 348 0 39 12 0 0
cpu0 7262 0 1042 37684 24 0 12 4 0 0
cpu1 7914 0 1584 36238 323 0 26 7 0 0
intr 171897 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 15 0 0 0 0 92 36 0 20 1 34590 0 2733
ctxt 295017
btime 1795609290
processes 8218
procs_running 1
procs_blocked 0
softirq 116881 0 15545 4 4578 35989 0 160 23844 0 36761
";

    fn collector(dir: &Path, softirq: bool) -> StatCollector {
        StatCollector {
            paths: Paths {
                procfs: dir.into(),
                ..Paths::default()
            },
            softirq,
        }
    }

    fn value(families: &[Family], name: &str) -> Option<f64> {
        families
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.samples[0].value)
    }

    #[test]
    fn parses_every_line_it_needs() {
        let s = parse_proc_stat(Path::new("stat"), PROC_STAT).unwrap();
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[1].id, "1");
        assert_eq!(s.cpus[1].ticks, [7914, 0, 1584, 36238, 323, 0, 26, 7, 0, 0]);
        assert_eq!(s.intr, Some(171897));
        assert_eq!(s.ctxt, Some(295017));
        assert_eq!(s.btime, Some(1795609290));
        assert_eq!(s.processes, Some(8218));
        assert_eq!(s.procs_running, Some(1));
        assert_eq!(s.procs_blocked, Some(0));
        assert_eq!(s.softirq.as_deref().map(<[u64]>::len), Some(10));
    }

    #[test]
    fn old_kernels_with_fewer_cpu_fields_are_accepted() {
        let s = parse_proc_stat(Path::new("stat"), "cpu0 1 2 3 4 5\ncpu3 1 2 3 4\n").unwrap();
        assert_eq!(s.cpus[0].ticks, [1, 2, 3, 4, 5, 0, 0, 0, 0, 0]);
        assert_eq!(s.cpus[1].id, "3");
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let err = parse_proc_stat(Path::new("/p/stat"), "cpu0 1 2 3 4\nctxt lots\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/p/stat") && msg.contains("line 2") && msg.contains("ctxt"),
            "{msg}"
        );
        assert!(parse_proc_stat(Path::new("s"), "cpu0 1 2\n").is_err());
        assert!(parse_proc_stat(Path::new("s"), "cpuX 1 2 3 4\n").is_err());
        assert!(parse_proc_stat(Path::new("s"), "btime\n").is_err());
    }

    #[test]
    fn reports_node_exporter_names_and_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), PROC_STAT).unwrap();
        let f = collector(dir.path(), false).collect().unwrap();
        assert_eq!(value(&f, "node_intr_total"), Some(171897.0));
        assert_eq!(value(&f, "node_context_switches_total"), Some(295017.0));
        assert_eq!(value(&f, "node_forks_total"), Some(8218.0));
        assert_eq!(value(&f, "node_boot_time_seconds"), Some(1795609290.0));
        assert_eq!(value(&f, "node_procs_running"), Some(1.0));
        assert_eq!(value(&f, "node_procs_blocked"), Some(0.0));
        assert!(value(&f, "node_softirqs_total").is_none());
        let kind = |n: &str| f.iter().find(|x| x.name == n).unwrap().kind;
        assert_eq!(
            kind("node_intr_total"),
            crate::exposition::MetricType::Counter
        );
        assert_eq!(
            kind("node_boot_time_seconds"),
            crate::exposition::MetricType::Gauge
        );
    }

    #[test]
    fn softirqs_per_vector_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), PROC_STAT).unwrap();
        let f = collector(dir.path(), true).collect().unwrap();
        let s = f.iter().find(|x| x.name == "node_softirqs_total").unwrap();
        assert_eq!(s.samples.len(), 10);
        assert_eq!(
            s.samples[1].labels,
            vec![("vector".to_string(), "timer".to_string())]
        );
        assert_eq!(s.samples[1].value, 15545.0);
        assert_eq!(s.samples[9].labels[0].1, "rcu");
        assert_eq!(s.samples[9].value, 36761.0);
    }

    #[test]
    fn missing_or_empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            collector(dir.path(), false).collect(),
            Err(CollectError::Io { .. })
        ));
        std::fs::write(dir.path().join("stat"), "cpu0 1 2 3 4\n").unwrap();
        assert!(matches!(
            collector(dir.path(), false).collect(),
            Err(CollectError::Parse { .. })
        ));
    }

    #[test]
    fn flag_switches_softirqs_on() {
        let cmd = clap::Command::new("t").args(flags());
        let m = cmd.clone().get_matches_from(["t"]);
        assert!(!bool_option(&m, SOFTIRQ_FLAG, false));
        let m = cmd
            .clone()
            .get_matches_from(["t", "--collector.stat.softirq"]);
        assert!(bool_option(&m, SOFTIRQ_FLAG, false));
        let m = cmd.get_matches_from([
            "t",
            "--collector.stat.softirq",
            "--no-collector.stat.softirq",
        ]);
        assert!(!bool_option(&m, SOFTIRQ_FLAG, false));
    }

    #[test]
    fn real_proc_stat_is_sane() {
        let f = collector(Path::new("/proc"), true).collect().unwrap();
        let boot = value(&f, "node_boot_time_seconds").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(boot > 1.0e9 && boot < now, "boot time {boot}");
        assert!(value(&f, "node_context_switches_total").unwrap() > 0.0);
        assert!(value(&f, "node_forks_total").unwrap() > 0.0);
        assert!(value(&f, "node_intr_total").unwrap() > 0.0);
        // This test itself is running.
        assert!(value(&f, "node_procs_running").unwrap() >= 1.0);
        assert!(f.iter().any(|x| x.name == "node_softirqs_total"));
    }
}
