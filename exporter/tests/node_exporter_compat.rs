//! imd-exporter against Debian's node_exporter 1.5, side by side on this
//! machine: for every collector both have, every metric family node_exporter
//! emits must come out of imd-exporter with the same type, label names,
//! series (label-value sets) and values within a tolerance fit for the
//! metric, so that dashboards and alerts written for node_exporter work
//! unchanged.
//!
//! Each collector is scraped three times through `collect[]`:
//! node_exporter, imd-exporter, node_exporter again. A counter read by
//! imd-exporter must lie between the two node_exporter readings; a gauge
//! must lie between them widened by a tolerance for how fast it moves.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Family, Sample, free_port, scrape, start_imd, start_node_exporter, tempdir};

/// The collectors node_exporter and imd-exporter share (node_exporter's
/// names). Those imd-exporter does not have (yet) are listed and skipped.
const SHARED: &[&str] = &[
    "cpu",
    "meminfo",
    "loadavg",
    "stat",
    "diskstats",
    "filesystem",
    "netdev",
    "pressure",
    "uname",
    "time",
    "os",
    "netclass",
];

/// Filter flags given to both exporters. Debian patches node_exporter's
/// defaults for these two (it adds `mnt` and `media` to the excluded mount
/// points and leaves out `lo`), so the comparison sets them explicitly and
/// checks that both apply the same filter, whatever their defaults.
const FILTER_FLAGS: &[&str] = &[
    "--collector.filesystem.mount-points-exclude=^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
    "--collector.netdev.device-exclude=^lo$",
];

type Key = (String, BTreeMap<String, String>);

fn series(f: &Family) -> BTreeMap<Key, f64> {
    f.samples
        .iter()
        .map(|s: &Sample| ((s.name.clone(), s.label_map()), s.value))
        .collect()
}

fn node_families(fams: BTreeMap<String, Family>) -> BTreeMap<String, Family> {
    fams.into_iter()
        .filter(|(name, _)| {
            name.starts_with("node_")
                && !name.starts_with("node_scrape_collector_")
                && name != "node_exporter_build_info"
        })
        .collect()
}

fn success(fams: &BTreeMap<String, Family>, collector: &str) -> Option<f64> {
    fams.get("node_scrape_collector_success")?
        .samples
        .iter()
        .find(|s| s.label("collector") == Some(collector))
        .map(|s| s.value)
}

/// How far outside the [first, second] node_exporter bracket imd-exporter's
/// reading may be, in absolute units, for one series. Every allowance says
/// why the value may move outside the bracket.
fn slack(family: &str, kind: &str, key: &Key, magnitude: f64) -> f64 {
    let mode = key.1.get("mode").map(String::as_str);
    // Float formatting round trips exactly; a tiny relative slack covers
    // values computed by division (ticks → seconds).
    let exact = 1e-9 * magnitude.abs();
    match (kind, family) {
        // The kernel's idle and iowait times of a CPU may step backwards a
        // little (NOHZ accounting), so a later reading can be lower.
        ("counter", "node_cpu_seconds_total") if matches!(mode, Some("idle" | "iowait")) => {
            exact + 1.0
        }
        ("counter", _) => exact,
        // Instantaneous counts of the kernel: change between any two reads.
        (_, "node_procs_running" | "node_procs_blocked") => 16.0,
        (_, "node_disk_io_now") => 32.0,
        (_, "node_time_seconds") => 0.5,
        // Memory moves with every allocation on a busy machine; the bracket
        // catches trends, this allowance catches spikes between reads.
        (_, f) if f.starts_with("node_memory_") && f.ends_with("_bytes") => {
            0.02 * magnitude.abs() + 32.0 * 1024.0 * 1024.0
        }
        (_, "node_filesystem_avail_bytes" | "node_filesystem_free_bytes") => {
            0.01 * magnitude.abs() + 256.0 * 1024.0 * 1024.0
        }
        (_, "node_filesystem_files_free") => 0.01 * magnitude.abs() + 10_000.0,
        (_, f) if f.starts_with("node_load") => 0.05,
        // Everything else (sizes, flags, info metrics, boot time) holds still.
        _ => exact,
    }
}

struct Report {
    families: usize,
    series: usize,
    extra: Vec<String>,
}

fn compare(
    collector: &str,
    ne1: &BTreeMap<String, Family>,
    imd: &BTreeMap<String, Family>,
    ne2: &BTreeMap<String, Family>,
    failures: &mut Vec<String>,
) -> Report {
    let mut report = Report {
        families: 0,
        series: 0,
        extra: imd
            .keys()
            .filter(|n| !ne1.contains_key(*n) && !ne2.contains_key(*n))
            .cloned()
            .collect(),
    };
    for (name, f1) in ne1 {
        let Some(f2) = ne2.get(name) else {
            continue; // came and went between node_exporter's two reads
        };
        report.families += 1;
        let Some(fi) = imd.get(name) else {
            failures.push(format!(
                "{collector}: family {name} ({}) is missing",
                f1.kind
            ));
            continue;
        };
        if fi.kind != f1.kind {
            failures.push(format!(
                "{collector}: {name} has TYPE {} in imd-exporter, {} in node_exporter",
                fi.kind, f1.kind
            ));
        }
        let names = |f: &Family| -> BTreeSet<Vec<String>> {
            f.samples
                .iter()
                .map(|s| s.label_map().keys().cloned().collect())
                .collect()
        };
        if names(fi) != names(f1) {
            failures.push(format!(
                "{collector}: {name} label names differ: imd-exporter {:?}, node_exporter {:?}",
                names(fi),
                names(f1)
            ));
            continue;
        }
        let (s1, s2, si) = (series(f1), series(f2), series(fi));
        let must: BTreeSet<&Key> = s1.keys().filter(|k| s2.contains_key(*k)).collect();
        let may: BTreeSet<&Key> = s1.keys().chain(s2.keys()).collect();
        let have: BTreeSet<&Key> = si.keys().collect();
        let missing: Vec<_> = must.difference(&have).map(|k| fmt_key(k)).collect();
        let unexpected: Vec<_> = have.difference(&may).map(|k| fmt_key(k)).collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{collector}: {name}: series missing in imd-exporter: {}",
                missing.join(" ")
            ));
        }
        if !unexpected.is_empty() {
            failures.push(format!(
                "{collector}: {name}: series node_exporter does not have: {}",
                unexpected.join(" ")
            ));
        }
        for key in must.intersection(&have) {
            let (a, b, v) = (s1[*key], s2[*key], si[*key]);
            report.series += 1;
            if name.ends_with("_info") {
                if v != a {
                    failures.push(format!(
                        "{collector}: {} = {v}, node_exporter {a}",
                        fmt_key(key)
                    ));
                }
                continue;
            }
            if a.is_nan() || b.is_nan() || v.is_nan() {
                if !(a.is_nan() && v.is_nan()) {
                    failures.push(format!(
                        "{collector}: {} = {v}, node_exporter {a} / {b}",
                        fmt_key(key)
                    ));
                }
                continue;
            }
            let tol = slack(name, &f1.kind, key, a.abs().max(b.abs()));
            let (lo, hi) = (a.min(b) - tol, a.max(b) + tol);
            if !(lo..=hi).contains(&v) {
                failures.push(format!(
                    "{collector}: {} = {v} is outside node_exporter's {a} .. {b} (± {tol})",
                    fmt_key(key)
                ));
            }
        }
    }
    report
}

fn fmt_key((name, labels): &Key) -> String {
    if labels.is_empty() {
        return name.clone();
    }
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", l.join(","))
}

#[test]
fn shared_collectors_match_node_exporter() {
    let have = common::imd_collectors();
    let (compared, skipped): (Vec<&str>, Vec<&str>) =
        SHARED.iter().partition(|c| have.iter().any(|h| h == *c));
    println!("collectors compared: {}", compared.join(", "));
    println!(
        "collectors skipped (imd-exporter has none of that name): {}",
        if skipped.is_empty() {
            "none".to_string()
        } else {
            skipped.join(", ")
        }
    );
    assert!(
        compared.len() >= 3,
        "too few shared collectors to compare ({compared:?}); imd-exporter has {have:?}"
    );

    let dir = tempdir();
    let flags: Vec<String> = std::iter::once("--collector.disable-defaults".to_string())
        .chain(compared.iter().map(|c| format!("--collector.{c}")))
        .chain(
            FILTER_FLAGS
                .iter()
                .filter(|f| {
                    compared
                        .iter()
                        .any(|c| f.starts_with(&format!("--collector.{c}.")))
                })
                .map(|f| f.to_string()),
        )
        .collect();
    let (ne_port, imd_port) = (free_port(), free_port());
    let _ne = start_node_exporter(dir.path(), ne_port, &flags);
    let _imd = start_imd(dir.path(), imd_port, &flags);

    // The first scrape warms both up (node_exporter compiles its filters,
    // imd-exporter starts its threads); only later rounds are compared.
    scrape(ne_port, &[]);
    scrape(imd_port, &[]);

    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for collector in &compared {
        // A family can disappear for a moment (a device appears); on a
        // mismatch the comparison is tried again before it counts.
        let mut last = Vec::new();
        let mut report = None;
        for _attempt in 0..3 {
            let ne1 = scrape(ne_port, &[collector]);
            let imd = scrape(imd_port, &[collector]);
            let ne2 = scrape(ne_port, &[collector]);
            let mut f = Vec::new();
            let (ok1, oki) = (success(&ne1, collector), success(&imd, collector));
            if ok1 != oki {
                f.push(format!("{collector}: node_scrape_collector_success is {oki:?} in imd-exporter, {ok1:?} in node_exporter"));
            }
            let r = compare(
                collector,
                &node_families(ne1),
                &node_families(imd),
                &node_families(ne2),
                &mut f,
            );
            last = f;
            report = Some(r);
            if last.is_empty() {
                break;
            }
        }
        let r = report.expect("at least one round");
        rows.push(format!(
            "{collector:<11} {:>3} families {:>4} series {}",
            r.families,
            r.series,
            if r.extra.is_empty() {
                String::new()
            } else {
                format!("(imd-exporter also has: {})", r.extra.join(", "))
            }
        ));
        if r.families == 0 && last.is_empty() {
            last.push(format!(
                "{collector}: node_exporter emitted no families, nothing was compared"
            ));
        }
        failures.extend(last);
    }
    println!("compared with node_exporter (families, series with values checked):");
    for r in &rows {
        println!("  {r}");
    }
    assert!(
        failures.is_empty(),
        "{} differences from node_exporter:\n{}",
        failures.len(),
        failures
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn exporter_self_metrics_have_client_library_types() {
    // node_exporter serves Go's process collector; imd-exporter serves the
    // same `process_*` names (values naturally differ).
    let dir = tempdir();
    let (ne_port, imd_port) = (free_port(), free_port());
    let flags = vec![
        "--collector.disable-defaults".to_string(),
        "--collector.loadavg".to_string(),
    ];
    let _ne = start_node_exporter(dir.path(), ne_port, &flags);
    let _imd = start_imd(dir.path(), imd_port, &flags);
    let ne = scrape(ne_port, &[]);
    let imd = scrape(imd_port, &[]);
    let mut checked = Vec::new();
    for (name, f) in ne.iter().filter(|(n, _)| n.starts_with("process_")) {
        let Some(mine) = imd.get(name) else {
            panic!("imd-exporter lacks {name}");
        };
        assert_eq!(mine.kind, f.kind, "{name}");
        assert_eq!(mine.samples.len(), 1, "{name}");
        checked.push(name.as_str());
    }
    assert!(checked.len() >= 5, "node_exporter gave only {checked:?}");
    let rss = imd["process_resident_memory_bytes"].samples[0].value;
    assert!(rss > 1e6 && rss < 1e9, "imd-exporter RSS {rss}");
    println!("process_* families compared: {}", checked.join(", "));
}
