//! `pressure`: pressure stall information (PSI) from /proc/pressure/{cpu,io,memory}
//! as the cumulative stall times node_exporter reports. Each file's `some`
//! line counts time at least one task waited, the `full` line time all
//! non-idle tasks were stalled; `total=` is in microseconds.

use std::path::Path;

use super::util::parse_error;
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "pressure",
    help: "Pressure stall information from /proc/pressure (node_pressure_*)",
    default_enabled: true,
    configured: super::not_configured,
    flags: Vec::new,
    build,
};

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(Pressure {
        paths: ctx.paths.clone(),
    }))
}

/// Per resource: the file, then the metric and help for the `some` line and,
/// where node_exporter reports it, for the `full` line.
type Resource = (
    &'static str,
    (&'static str, &'static str),
    Option<(&'static str, &'static str)>,
);

const RESOURCES: [Resource; 3] = [
    (
        "cpu",
        (
            "node_pressure_cpu_waiting_seconds_total",
            "Total time in seconds that processes have waited for CPU time",
        ),
        // Kernels since 5.13 also write a `full` line for cpu (always zero
        // system-wide); node_exporter 1.5 does not report it.
        None,
    ),
    (
        "io",
        (
            "node_pressure_io_waiting_seconds_total",
            "Total time in seconds that processes have waited due to IO congestion",
        ),
        Some((
            "node_pressure_io_stalled_seconds_total",
            "Total time in seconds no process could make progress due to IO congestion",
        )),
    ),
    (
        "memory",
        (
            "node_pressure_memory_waiting_seconds_total",
            "Total time in seconds that processes have waited for memory",
        ),
        Some((
            "node_pressure_memory_stalled_seconds_total",
            "Total time in seconds no process could make progress due to memory congestion",
        )),
    ),
];

struct Pressure {
    paths: Paths,
}

impl Collector for Pressure {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let mut out = Vec::new();
        for (resource, (some_name, some_help), full) in RESOURCES {
            let path = self.paths.proc(Path::new("pressure").join(resource));
            let text = match super::util::read_regular(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(CollectError::NoData(format!(
                        "{} does not exist: pressure stall information needs Linux 4.20 or later with CONFIG_PSI",
                        path.display()
                    )));
                }
                // A kernel built with PSI but booted with psi=0.
                Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {
                    return Err(CollectError::NoData(format!(
                        "{}: pressure stall information is switched off; boot with psi=1 to switch it on",
                        path.display()
                    )));
                }
                Err(source) => return Err(CollectError::Io { path, source }),
            };
            let totals = parse_psi(&path, &text)?;
            let Some(some) = totals.some else {
                return Err(CollectError::Parse {
                    path,
                    message: "no `some` line".into(),
                });
            };
            let mut f = Family::counter(some_name, some_help);
            f.push_value(some as f64 / 1e6);
            out.push(f);
            if let (Some((full_name, full_help)), Some(full)) = (full, totals.full) {
                let mut f = Family::counter(full_name, full_help);
                f.push_value(full as f64 / 1e6);
                out.push(f);
            }
        }
        Ok(out)
    }
}

/// The `total=` microseconds of a PSI file's `some` and `full` lines.
#[derive(Debug, Default, PartialEq)]
struct PsiTotals {
    some: Option<u64>,
    full: Option<u64>,
}

fn parse_psi(path: &Path, text: &str) -> Result<PsiTotals, CollectError> {
    let mut out = PsiTotals::default();
    for (idx, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(kind) = fields.next() else { continue };
        let slot = match kind {
            "some" => &mut out.some,
            "full" => &mut out.full,
            other => {
                return Err(parse_error(
                    path,
                    idx + 1,
                    format!("unknown line kind {other:?}"),
                ));
            }
        };
        let total = fields
            .find_map(|f| f.strip_prefix("total="))
            .ok_or_else(|| parse_error(path, idx + 1, format!("{kind}: no total= field")))?;
        *slot = Some(total.parse().map_err(|_| {
            parse_error(
                path,
                idx + 1,
                format!("{kind}: total={total:?} is not a whole number"),
            )
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::MetricType;

    // This machine's files (kernel 6.1).
    const CPU: &str = "some avg10=11.60 avg60=4.84 avg300=1.60 total=8344837\n\
                       full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
    const IO: &str = "some avg10=0.03 avg60=0.25 avg300=0.28 total=3095981\n\
                      full avg10=0.03 avg60=0.24 avg300=0.27 total=2930343\n";
    const MEMORY: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500\n\
                          full avg10=0.00 avg60=0.00 avg300=0.00 total=700\n";

    fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, Pressure) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pressure")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join("pressure").join(name), text).unwrap();
        }
        let p = Pressure {
            paths: Paths {
                procfs: dir.path().into(),
                ..Paths::default()
            },
        };
        (dir, p)
    }

    fn value(f: &[Family], name: &str) -> Option<f64> {
        f.iter()
            .find(|f| f.name == name)
            .map(|f| f.samples[0].value)
    }

    #[test]
    fn totals_in_seconds() {
        let (_d, p) = fixture(&[("cpu", CPU), ("io", IO), ("memory", MEMORY)]);
        let f = p.collect().unwrap();
        assert_eq!(f.len(), 5);
        assert!(f.iter().all(|f| f.kind == MetricType::Counter));
        assert_eq!(
            value(&f, "node_pressure_cpu_waiting_seconds_total"),
            Some(8.344837)
        );
        assert_eq!(
            value(&f, "node_pressure_io_waiting_seconds_total"),
            Some(3.095981)
        );
        assert_eq!(
            value(&f, "node_pressure_io_stalled_seconds_total"),
            Some(2.930343)
        );
        assert_eq!(
            value(&f, "node_pressure_memory_waiting_seconds_total"),
            Some(0.0015)
        );
        assert_eq!(
            value(&f, "node_pressure_memory_stalled_seconds_total"),
            Some(0.0007)
        );
        assert!(
            f.iter()
                .all(|f| f.name != "node_pressure_cpu_stalled_seconds_total")
        );
    }

    #[test]
    fn older_kernel_without_cpu_full_line() {
        let (_d, p) = fixture(&[
            ("cpu", "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n"),
            ("io", IO),
            ("memory", MEMORY),
        ]);
        let f = p.collect().unwrap();
        assert_eq!(
            value(&f, "node_pressure_cpu_waiting_seconds_total"),
            Some(0.000042)
        );
    }

    #[test]
    fn no_pressure_directory_is_no_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pressure {
            paths: Paths {
                procfs: dir.path().into(),
                ..Paths::default()
            },
        };
        assert!(matches!(p.collect(), Err(CollectError::NoData(_))));
        let (_d, p) = fixture(&[("cpu", CPU)]);
        assert!(matches!(p.collect(), Err(CollectError::NoData(_))));
    }

    #[test]
    fn malformed_files_are_parse_errors() {
        let (_d, p) = fixture(&[
            ("cpu", "some avg10=0.00 total=x\n"),
            ("io", IO),
            ("memory", MEMORY),
        ]);
        let e = p.collect().unwrap_err();
        assert!(matches!(e, CollectError::Parse { .. }));
        assert!(e.to_string().contains("line 1"), "{e}");
        let (_d, p) = fixture(&[("cpu", "some avg10=0.00\n"), ("io", IO), ("memory", MEMORY)]);
        assert!(p.collect().is_err());
        let (_d, p) = fixture(&[("cpu", "full total=1\n"), ("io", IO), ("memory", MEMORY)]);
        assert!(p.collect().is_err());
        let (_d, p) = fixture(&[("cpu", "half total=1\n"), ("io", IO), ("memory", MEMORY)]);
        assert!(p.collect().is_err());
    }

    #[test]
    fn real_proc_pressure_is_sane() {
        let p = Pressure {
            paths: Paths::default(),
        };
        match p.collect() {
            Ok(f) => {
                assert_eq!(f.len(), 5);
                assert!(f.iter().all(|f| f.samples[0].value >= 0.0));
            }
            // A kernel without PSI is a legitimate outcome, not a failure.
            Err(CollectError::NoData(_)) => assert!(
                !Path::new("/proc/pressure/cpu").exists()
                    || std::fs::read_to_string("/proc/pressure/cpu").is_err()
            ),
            Err(e) => panic!("{e}"),
        }
    }
}
