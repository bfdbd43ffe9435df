//! `meminfo`: every field of /proc/meminfo as a gauge, named as
//! node_exporter names them: `MemTotal: 123 kB` becomes
//! `node_memory_MemTotal_bytes 125952`, `Active(anon)` becomes
//! `node_memory_Active_anon_bytes`, and fields without a unit (the
//! `HugePages_*` page counts) keep their value and get no `_bytes`.

use std::path::Path;

use super::util::{parse_error, read_string};
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "meminfo",
    help: "Memory statistics from /proc/meminfo (node_memory_*)",
    default_enabled: true,
    configured: super::not_configured,
    flags: Vec::new,
    build,
};

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(MemInfo {
        paths: ctx.paths.clone(),
    }))
}

struct MemInfo {
    paths: Paths,
}

impl Collector for MemInfo {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let path = self.paths.proc("meminfo");
        let fields = parse_meminfo(&path, &read_string(&path)?)?;
        if fields.is_empty() {
            return Err(CollectError::Parse {
                path,
                message: "no fields".into(),
            });
        }
        Ok(fields
            .into_iter()
            .map(|(name, value)| {
                let mut f = Family::gauge(
                    format!("node_memory_{name}"),
                    format!("Memory information field {name}."),
                );
                f.push_value(value);
                f
            })
            .collect())
    }
}

/// Parses /proc/meminfo into (metric name without `node_memory_`, value)
/// pairs in file order. `kB` values are turned into bytes.
fn parse_meminfo(path: &Path, text: &str) -> Result<Vec<(String, f64)>, CollectError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |msg: String| parse_error(path, idx + 1, msg);
        let Some((key, rest)) = line.split_once(':') else {
            return Err(err(format!("expected `Name: value [kB]`, found {line:?}")));
        };
        let mut parts = rest.split_whitespace();
        let (Some(number), unit, None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err(format!(
                "{key}: expected a value and an optional unit, found {:?}",
                rest.trim()
            )));
        };
        let value: f64 = number
            .parse::<u64>()
            .map_err(|_| err(format!("{key}: expected a whole number, found {number:?}")))?
            as f64;
        let name = metric_name(key);
        match unit {
            None => out.push((name, value)),
            Some("kB") => out.push((format!("{name}_bytes"), value * 1024.0)),
            Some(u) => return Err(err(format!("{key}: unknown unit {u:?}"))),
        }
    }
    Ok(out)
}

/// node_exporter's field naming: a parenthesised part becomes an underscore
/// suffix (`Active(anon)` → `Active_anon`); any other character not allowed
/// in a metric name becomes `_`.
fn metric_name(key: &str) -> String {
    let key = key.trim();
    let key = match (key.find('('), key.rfind(')')) {
        (Some(open), Some(close)) if open < close => {
            format!(
                "{}_{}{}",
                &key[..open],
                &key[open + 1..close],
                &key[close + 1..]
            )
        }
        _ => key.to_string(),
    };
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::MetricType;

    /// /proc/meminfo of a Debian 12 VM (kernel 6.1).
    const MEMINFO: &str = "\
MemTotal:       24684084 kB
MemFree:        23195376 kB
MemAvailable:   24056372 kB
Buffers:            9464 kB
Cached:          1027032 kB
SwapCached:            0 kB
Active:           352384 kB
Inactive:         868844 kB
Active(anon):       1548 kB
Inactive(anon):   192008 kB
Active(file):     350836 kB
Inactive(file):   676836 kB
Unevictable:       14392 kB
Mlocked:           13504 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:             95204 kB
Writeback:             4 kB
AnonPages:        199128 kB
Mapped:           107580 kB
Shmem:              8872 kB
KReclaimable:      82988 kB
Slab:             106832 kB
SReclaimable:      82988 kB
SUnreclaim:        23844 kB
KernelStack:        1864 kB
PageTables:         4048 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    12342040 kB
Committed_AS:     241704 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       14668 kB
VmallocChunk:          0 kB
Percpu:              688 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:     18432 kB
FilePmdMapped:         0 kB
Balloon:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:       26624 kB
DirectMap2M:     2070528 kB
DirectMap1G:    25165824 kB
";

    fn collect(text: &str) -> Result<Vec<Family>, CollectError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), text).unwrap();
        MemInfo {
            paths: Paths {
                procfs: dir.path().into(),
                ..Paths::default()
            },
        }
        .collect()
    }

    fn value(f: &[Family], name: &str) -> Option<f64> {
        f.iter()
            .find(|f| f.name == name)
            .map(|f| f.samples[0].value)
    }

    #[test]
    fn every_field_with_node_exporter_names() {
        let f = collect(MEMINFO).unwrap();
        assert_eq!(f.len(), 54);
        assert!(
            f.iter()
                .all(|f| f.kind == MetricType::Gauge && f.samples.len() == 1)
        );
        assert_eq!(
            value(&f, "node_memory_MemTotal_bytes"),
            Some(24684084.0 * 1024.0)
        );
        assert_eq!(
            value(&f, "node_memory_Active_anon_bytes"),
            Some(1548.0 * 1024.0)
        );
        assert_eq!(
            value(&f, "node_memory_Inactive_file_bytes"),
            Some(676836.0 * 1024.0)
        );
        assert_eq!(
            value(&f, "node_memory_Committed_AS_bytes"),
            Some(241704.0 * 1024.0)
        );
        assert_eq!(
            value(&f, "node_memory_VmallocTotal_bytes"),
            Some(34359738367.0 * 1024.0)
        );
        assert_eq!(value(&f, "node_memory_HugePages_Total"), Some(0.0));
        assert_eq!(
            value(&f, "node_memory_Hugepagesize_bytes"),
            Some(2048.0 * 1024.0)
        );
        assert!(value(&f, "node_memory_HugePages_Total_bytes").is_none());
        let hp = f
            .iter()
            .find(|f| f.name == "node_memory_HugePages_Free")
            .unwrap();
        assert_eq!(hp.help, "Memory information field HugePages_Free.");
    }

    #[test]
    fn names_follow_node_exporter() {
        assert_eq!(metric_name("Active(anon)"), "Active_anon");
        assert_eq!(metric_name("Inactive(file)"), "Inactive_file");
        assert_eq!(metric_name("NFS_Unstable"), "NFS_Unstable");
        assert_eq!(metric_name("DirectMap4k"), "DirectMap4k");
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let e = collect("MemTotal: 1 kB\nMemFree: lots kB\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("meminfo") && e.contains("line 2") && e.contains("MemFree"),
            "{e}"
        );
        assert!(collect("MemTotal 1 kB\n").is_err());
        assert!(collect("MemTotal: 1 MB\n").is_err());
        assert!(collect("MemTotal: 1 kB extra\n").is_err());
        assert!(collect("MemTotal:\n").is_err());
        assert!(matches!(collect(""), Err(CollectError::Parse { .. })));
    }

    #[test]
    fn real_proc_meminfo_is_sane() {
        let f = MemInfo {
            paths: Paths::default(),
        }
        .collect()
        .unwrap();
        let total = value(&f, "node_memory_MemTotal_bytes").unwrap();
        let free = value(&f, "node_memory_MemFree_bytes").unwrap();
        assert!(total > 64.0 * 1024.0 * 1024.0, "MemTotal {total}");
        assert!(free > 0.0 && free <= total);
        assert!(value(&f, "node_memory_HugePages_Total").is_some());
        assert!(value(&f, "node_memory_Active_anon_bytes").is_some());
    }
}
