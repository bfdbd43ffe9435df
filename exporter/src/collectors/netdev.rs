//! `netdev`: per-interface traffic counters from /proc/net/dev, under
//! node_exporter 1.5's names (`node_network_{receive,transmit}_*_total`).

use super::util::{DeviceFilter, parse_error, read_string};
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "netdev",
    help: "Network interface traffic counters from /proc/net/dev (node_network_*_total)",
    default_enabled: true,
    configured: super::not_configured,
    flags,
    build,
};

fn flags() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new("collector.netdev.device-include")
            .long("collector.netdev.device-include")
            .value_name("REGEX")
            .help("Regexp of net devices to include (mutually exclusive to device-exclude)"),
        clap::Arg::new("collector.netdev.device-exclude")
            .long("collector.netdev.device-exclude")
            .value_name("REGEX")
            .help("Regexp of net devices to exclude (mutually exclusive to device-include)"),
    ]
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(NetDev {
        paths: ctx.paths.clone(),
        filter: DeviceFilter::from_flags(ctx, "collector.netdev.device")?,
    }))
}

struct NetDev {
    paths: Paths,
    filter: DeviceFilter,
}

/// The sixteen columns of /proc/net/dev after the interface name, as
/// metric names, in the file's order.
const COLUMNS: [&str; 16] = [
    "node_network_receive_bytes_total",
    "node_network_receive_packets_total",
    "node_network_receive_errs_total",
    "node_network_receive_drop_total",
    "node_network_receive_fifo_total",
    "node_network_receive_frame_total",
    "node_network_receive_compressed_total",
    "node_network_receive_multicast_total",
    "node_network_transmit_bytes_total",
    "node_network_transmit_packets_total",
    "node_network_transmit_errs_total",
    "node_network_transmit_drop_total",
    "node_network_transmit_fifo_total",
    "node_network_transmit_colls_total",
    "node_network_transmit_carrier_total",
    "node_network_transmit_compressed_total",
];

/// Parses /proc/net/dev into (interface, sixteen counters). Written by hand:
/// procfs' parser splits on blanks, which fails when a large byte count
/// leaves no blank after the colon (`eth0:123456789012`), and loses order.
fn parse(path: &std::path::Path, text: &str) -> Result<Vec<(String, [u64; 16])>, CollectError> {
    let mut out = Vec::new();
    // Two header lines, then one line per interface. The headers are
    // checked (both have column groups split by '|'), so that a file that is
    // only one or two lines of something else is not read as no interfaces.
    for (i, line) in text.lines().enumerate().take(2) {
        if !line.contains('|') {
            return Err(parse_error(
                path,
                i + 1,
                "not the /proc/net/dev header (no '|' between column groups)",
            ));
        }
    }
    for (i, line) in text.lines().enumerate().skip(2) {
        if line.trim().is_empty() {
            continue;
        }
        let Some(colon) = line.rfind(':') else {
            return Err(parse_error(
                path,
                i + 1,
                format!("no ':' after the interface name in {line:?}"),
            ));
        };
        let name = line[..colon].trim();
        let fields: Vec<&str> = line[colon + 1..].split_whitespace().collect();
        if name.is_empty() || fields.len() != 16 {
            return Err(parse_error(
                path,
                i + 1,
                format!("expected an interface name and 16 counters, found {line:?}"),
            ));
        }
        let mut values = [0u64; 16];
        for (v, f) in values.iter_mut().zip(&fields) {
            *v = f
                .parse()
                .map_err(|_| parse_error(path, i + 1, format!("{name}: {f:?} is not a counter")))?;
        }
        out.push((name.to_string(), values));
    }
    Ok(out)
}

impl Collector for NetDev {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let path = self.paths.proc("net/dev");
        let text = read_string(&path)?;
        let mut devices = parse(&path, &text)?;
        devices.retain(|(name, _)| self.filter.allows(name));
        devices.sort_by(|a, b| a.0.cmp(&b.0));
        let mut fams: Vec<Family> = COLUMNS
            .iter()
            .map(|name| {
                let key = name
                    .trim_start_matches("node_network_")
                    .trim_end_matches("_total");
                Family::counter(*name, format!("Network device statistic {key}."))
            })
            .collect();
        // node_exporter 1.5 reads these counters over netlink, which also
        // gives packets dropped for want of a protocol handler; /proc/net/dev
        // lacks that column, so it comes from the interface's sysfs
        // statistics when present.
        let mut nohandler = Family::counter(
            "node_network_receive_nohandler_total",
            "Network device statistic receive_nohandler.",
        );
        for (name, values) in &devices {
            for (f, v) in fams.iter_mut().zip(values) {
                f.push([("device", name.as_str())], *v as f64);
            }
            let file = self
                .paths
                .sys("class/net")
                .join(name)
                .join("statistics/rx_nohandler");
            if let Ok(text) = super::util::read_regular(&file) {
                match text.trim().parse::<u64>() {
                    Ok(v) => {
                        nohandler.push([("device", name.as_str())], v as f64);
                    }
                    Err(_) => tracing::debug!(path = %file.display(), "not a counter"),
                }
            }
        }
        if !nohandler.samples.is_empty() {
            fams.push(nohandler);
        }
        Ok(fams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/net/dev of the development machine, plus an interface whose
    /// byte count runs into the colon.
    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  ifb1:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 102346243    3814    0    0    0     0          0         0   272397    2476    0    0    0     0       0          0
  bond0:123456789012 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
";

    fn fixture() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        std::fs::write(dir.path().join("proc/net/dev"), NET_DEV).unwrap();
        let stats = dir.path().join("sys/class/net/eth0/statistics");
        std::fs::create_dir_all(&stats).unwrap();
        std::fs::write(stats.join("rx_nohandler"), "17\n").unwrap();
        let paths = Paths {
            procfs: dir.path().join("proc"),
            sysfs: dir.path().join("sys"),
            ..Paths::default()
        };
        (dir, paths)
    }

    fn build_with(paths: &Paths, args: &[&str]) -> anyhow::Result<Box<dyn Collector>> {
        crate::collectors::testutil::build_with(&SPEC, paths, args)
    }

    fn family<'a>(f: &'a [Family], name: &str) -> Vec<(&'a str, f64)> {
        crate::collectors::testutil::by_label(f, name, "device")
    }

    #[test]
    fn reads_every_column() {
        let (_dir, paths) = fixture();
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        assert_eq!(f.len(), 17);
        // Only where sysfs has it.
        assert_eq!(
            family(&f, "node_network_receive_nohandler_total"),
            [("eth0", 17.0)]
        );
        assert_eq!(
            family(&f, "node_network_receive_bytes_total"),
            [
                ("bond0", 123456789012.0),
                ("eth0", 102346243.0),
                ("ifb0", 0.0),
                ("ifb1", 0.0),
                ("lo", 3193.0)
            ]
        );
        assert_eq!(
            family(&f, "node_network_transmit_packets_total")[1],
            ("eth0", 2476.0)
        );
        for (i, name) in COLUMNS.iter().enumerate().skip(1) {
            assert_eq!(family(&f, name)[0], ("bond0", i as f64), "{name}");
        }
        assert!(
            f.iter()
                .all(|f| f.kind == crate::exposition::MetricType::Counter)
        );
        assert_eq!(f[0].samples[0].labels[0].0, "device");
    }

    #[test]
    fn filters_like_node_exporter() {
        let (_dir, paths) = fixture();
        let names = |args: &[&str]| -> Vec<String> {
            let f = build_with(&paths, args).unwrap().collect().unwrap();
            f[0].samples.iter().map(|s| s.labels[0].1.clone()).collect()
        };
        assert_eq!(
            names(&["--collector.netdev.device-exclude=^lo$"]),
            ["bond0", "eth0", "ifb0", "ifb1"]
        );
        // Unanchored: "ifb" matches ifb0 and ifb1.
        assert_eq!(
            names(&["--collector.netdev.device-exclude=ifb"]),
            ["bond0", "eth0", "lo"]
        );
        assert_eq!(
            names(&["--collector.netdev.device-include=eth|lo"]),
            ["eth0", "lo"]
        );
        assert!(
            build_with(
                &paths,
                &[
                    "--collector.netdev.device-include=eth",
                    "--collector.netdev.device-exclude=lo"
                ]
            )
            .is_err()
        );
        assert!(build_with(&paths, &["--collector.netdev.device-exclude=["]).is_err());
    }

    #[test]
    fn bad_lines_name_the_line() {
        let (dir, paths) = fixture();
        let c = build_with(&paths, &[]).unwrap();
        let header = NET_DEV.lines().take(2).collect::<Vec<_>>().join("\n");
        std::fs::write(
            dir.path().join("proc/net/dev"),
            format!("{header}\n  eth0: 1 2 3\n"),
        )
        .unwrap();
        let e = c.collect().unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        std::fs::write(
            dir.path().join("proc/net/dev"),
            format!("{header}\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n"),
        )
        .unwrap();
        assert!(matches!(c.collect(), Err(CollectError::Parse { .. })));
        std::fs::remove_file(dir.path().join("proc/net/dev")).unwrap();
        assert!(matches!(c.collect(), Err(CollectError::Io { .. })));
        // One line of something else is not "no interfaces".
        std::fs::write(dir.path().join("proc/net/dev"), "7".repeat(100_000)).unwrap();
        let e = c.collect().unwrap_err().to_string();
        assert!(e.contains("line 1: not the /proc/net/dev header"), "{e}");
        // An empty file is (no interfaces, as node_exporter reads it).
        std::fs::write(dir.path().join("proc/net/dev"), "").unwrap();
        assert!(c.collect().is_ok());
    }

    #[test]
    fn reads_the_real_system() {
        let paths = Paths::default();
        if !paths.proc("net/dev").exists() {
            return;
        }
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        let lo = family(&f, "node_network_receive_packets_total");
        assert!(lo.iter().any(|(d, _)| *d == "lo"), "{lo:?}");
        let text = std::fs::read_to_string(paths.proc("net/dev")).unwrap();
        assert_eq!(lo.len(), text.lines().count() - 2);
    }
}
