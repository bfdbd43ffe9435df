//! `netclass`: network interface properties from /sys/class/net/<iface>
//! (link state, MTU, speed, addresses), under node_exporter 1.5's names.

use std::path::Path;

use nix::errno::Errno;

use super::util::Dir;
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "netclass",
    help: "Network interface properties from /sys/class/net (node_network_up, _info, _mtu_bytes, ...)",
    default_enabled: true,
    configured: super::not_configured,
    flags,
    build,
};

fn flags() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new("collector.netclass.ignored-devices")
            .long("collector.netclass.ignored-devices")
            .value_name("REGEX")
            .default_value("^$")
            .help("Regexp of net devices to ignore for netclass collector"),
        clap::Arg::new("collector.netclass.ignore-invalid-speed")
            .long("collector.netclass.ignore-invalid-speed")
            .action(clap::ArgAction::SetTrue)
            .help("Ignore devices where the speed is invalid (negative)"),
    ]
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    let ignored = ctx
        .flag("collector.netclass.ignored-devices")
        .filter(|p| !p.is_empty())
        .map(|p| {
            regex::Regex::new(&p).map_err(|e| {
                anyhow::anyhow!(
                    "--collector.netclass.ignored-devices: invalid regular expression: {e}"
                )
            })
        })
        .transpose()?;
    let ignore_invalid_speed = ctx
        .matches
        .try_get_one::<bool>("collector.netclass.ignore-invalid-speed")
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false);
    Ok(Box::new(NetClass {
        paths: ctx.paths.clone(),
        ignored,
        ignore_invalid_speed,
    }))
}

struct NetClass {
    paths: Paths,
    ignored: Option<regex::Regex>,
    ignore_invalid_speed: bool,
}

/// Numeric attributes exported one metric each: (file, metric suffix,
/// is_counter), in node_exporter's order.
const NUMERIC: [(&str, &str, bool); 15] = [
    ("addr_assign_type", "address_assign_type", false),
    ("carrier", "carrier", false),
    ("carrier_changes", "carrier_changes_total", true),
    ("carrier_up_count", "carrier_up_changes_total", true),
    ("carrier_down_count", "carrier_down_changes_total", true),
    ("dev_id", "device_id", false),
    ("dormant", "dormant", false),
    ("flags", "flags", false),
    ("ifindex", "iface_id", false),
    ("iflink", "iface_link", false),
    ("link_mode", "iface_link_mode", false),
    ("mtu", "mtu_bytes", false),
    ("name_assign_type", "name_assign_type", false),
    ("netdev_group", "net_dev_group", false),
    ("tx_queue_len", "transmit_queue_length", false),
];

/// Reads one attribute of an interface, trimmed. `None` when the kernel
/// does not offer it for this device: no such file, or reading it fails
/// with EINVAL / EOPNOTSUPP / ENODATA (e.g. `speed` of a virtual device or
/// `carrier` of a device that is down).
fn attribute(dir: &Dir, base: &Path, file: &str) -> Result<Option<String>, CollectError> {
    match dir.read_regular(file) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e)
            if e.raw_os_error().map(Errno::from_raw).is_some_and(|n| {
                matches!(
                    n,
                    Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENODATA | Errno::EBUSY
                )
            }) =>
        {
            Ok(None)
        }
        Err(source) => Err(CollectError::Io {
            path: base.join(file),
            source,
        }),
    }
}

/// Parses an integer attribute, decimal or `0x` hexadecimal (`flags`,
/// `dev_id`).
fn integer(path: &Path, s: &str) -> Result<i64, CollectError> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| CollectError::Parse {
        path: path.to_path_buf(),
        message: format!("expected an integer, found {s:?}"),
    })
}

impl Collector for NetClass {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let dir = self.paths.sys("class/net");
        let entries = std::fs::read_dir(&dir).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CollectError::NoData(format!("{} does not exist", dir.display()))
            } else {
                CollectError::Io {
                    path: dir.clone(),
                    source,
                }
            }
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CollectError::Io {
                path: dir.clone(),
                source,
            })?;
            // Interfaces are (links to) directories; `bonding_masters`, a
            // file, is skipped when opening it as a directory fails below.
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.ignored.as_ref().is_some_and(|r| r.is_match(&name)) {
                continue;
            }
            names.push(name);
        }
        names.sort();

        let mut up = Family::gauge(
            "node_network_up",
            "Value is 1 if operstate is 'up', 0 otherwise.",
        );
        let mut info = Family::gauge(
            "node_network_info",
            "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
        );
        let mut numeric: Vec<Family> = NUMERIC
            .iter()
            .map(|&(_, suffix, counter)| {
                let name = format!("node_network_{suffix}");
                let help = format!("Network device property: {suffix}");
                if counter {
                    Family::counter(name, help)
                } else {
                    Family::gauge(name, help)
                }
            })
            .collect();
        let mut speed = Family::gauge(
            "node_network_speed_bytes",
            "Network device property: speed_bytes",
        );
        let mut protocol = Family::gauge(
            "node_network_protocol_type",
            "Network device property: protocol_type",
        );

        for name in &names {
            let base = dir.join(name);
            let device = match Dir::open(&base) {
                Ok(d) => d,
                // Removed since the directory was listed, or not an
                // interface (`bonding_masters`).
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
                {
                    continue;
                }
                Err(source) => return Err(CollectError::Io { path: base, source }),
            };
            let text = |file: &str| -> Result<String, CollectError> {
                Ok(attribute(&device, &base, file)?.unwrap_or_default())
            };
            let operstate = text("operstate")?;
            up.push(
                [("device", name.as_str())],
                if operstate == "up" { 1.0 } else { 0.0 },
            );
            info.push(
                [
                    ("address", text("address")?),
                    ("broadcast", text("broadcast")?),
                    ("device", name.clone()),
                    ("duplex", text("duplex")?),
                    ("ifalias", text("ifalias")?),
                    ("operstate", operstate),
                ],
                1.0,
            );
            let number = |file: &str| -> Result<Option<i64>, CollectError> {
                attribute(&device, &base, file)?
                    .map(|s| integer(&base.join(file), &s))
                    .transpose()
            };
            for (family, &(file, _, _)) in numeric.iter_mut().zip(NUMERIC.iter()) {
                if let Some(v) = number(file)? {
                    family.push([("device", name.as_str())], v as f64);
                }
            }
            if let Some(mbit) = number("speed")? {
                // Megabits per second; -1 when the driver does not know.
                if mbit >= 0 || !self.ignore_invalid_speed {
                    speed.push(
                        [("device", name.as_str())],
                        (mbit.saturating_mul(1_000_000) / 8) as f64,
                    );
                }
            }
            if let Some(t) = number("type")? {
                protocol.push([("device", name.as_str())], t as f64);
            }
        }

        let mut out = vec![up, info];
        out.extend(numeric);
        out.push(speed);
        out.push(protocol);
        out.retain(|f| !f.samples.is_empty());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attribute files of the development machine's eth0, lo and ifb0
    /// (files the kernel refuses to read for a device are left out).
    const ETH0: &[(&str, &str)] = &[
        ("addr_assign_type", "0"),
        ("addr_len", "6"),
        ("address", "02:fc:00:00:00:01"),
        ("broadcast", "ff:ff:ff:ff:ff:ff"),
        ("carrier", "1"),
        ("carrier_changes", "2"),
        ("carrier_up_count", "1"),
        ("carrier_down_count", "1"),
        ("dev_id", "0x0"),
        ("dormant", "0"),
        ("duplex", "unknown"),
        ("flags", "0x1003"),
        ("ifalias", ""),
        ("ifindex", "4"),
        ("iflink", "4"),
        ("link_mode", "0"),
        ("mtu", "1400"),
        ("name_assign_type", "1"),
        ("netdev_group", "0"),
        ("operstate", "up"),
        ("speed", "-1"),
        ("tx_queue_len", "1000"),
        ("type", "1"),
    ];
    const LO: &[(&str, &str)] = &[
        ("addr_assign_type", "0"),
        ("address", "00:00:00:00:00:00"),
        ("broadcast", "00:00:00:00:00:00"),
        ("carrier", "1"),
        ("carrier_changes", "0"),
        ("carrier_up_count", "0"),
        ("carrier_down_count", "0"),
        ("dev_id", "0x0"),
        ("dormant", "0"),
        ("flags", "0x9"),
        ("ifalias", ""),
        ("ifindex", "1"),
        ("iflink", "1"),
        ("link_mode", "0"),
        ("mtu", "65536"),
        ("name_assign_type", "2"),
        ("netdev_group", "0"),
        ("operstate", "unknown"),
        ("tx_queue_len", "1000"),
        ("type", "772"),
    ];
    const IFB0: &[(&str, &str)] = &[
        ("addr_assign_type", "1"),
        ("address", "62:a4:df:21:42:bc"),
        ("broadcast", "ff:ff:ff:ff:ff:ff"),
        ("carrier_changes", "0"),
        ("carrier_up_count", "0"),
        ("carrier_down_count", "0"),
        ("dev_id", "0x0"),
        ("flags", "0x82"),
        ("ifalias", "uplink to rack 3"),
        ("ifindex", "2"),
        ("iflink", "2"),
        ("link_mode", "0"),
        ("mtu", "1500"),
        ("netdev_group", "0"),
        ("operstate", "down"),
        ("tx_queue_len", "32"),
        ("type", "1"),
    ];

    fn fixture() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("class/net");
        for (iface, files) in [("eth0", ETH0), ("lo", LO), ("ifb0", IFB0)] {
            std::fs::create_dir_all(net.join(iface)).unwrap();
            for (f, v) in files {
                std::fs::write(net.join(iface).join(f), format!("{v}\n")).unwrap();
            }
        }
        std::fs::write(net.join("bonding_masters"), "\n").unwrap();
        let paths = Paths {
            sysfs: dir.path().into(),
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
    fn reads_interface_properties() {
        let (_dir, paths) = fixture();
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        assert_eq!(
            family(&f, "node_network_up"),
            [("eth0", 1.0), ("ifb0", 0.0), ("lo", 0.0)]
        );
        assert_eq!(
            family(&f, "node_network_mtu_bytes"),
            [("eth0", 1400.0), ("ifb0", 1500.0), ("lo", 65536.0)]
        );
        assert_eq!(
            family(&f, "node_network_flags"),
            [("eth0", 4099.0), ("ifb0", 130.0), ("lo", 9.0)]
        );
        // Missing attributes give no sample.
        assert_eq!(
            family(&f, "node_network_carrier"),
            [("eth0", 1.0), ("lo", 1.0)]
        );
        assert_eq!(
            family(&f, "node_network_name_assign_type"),
            [("eth0", 1.0), ("lo", 2.0)]
        );
        assert_eq!(
            family(&f, "node_network_speed_bytes"),
            [("eth0", -125000.0)]
        );
        assert_eq!(family(&f, "node_network_protocol_type")[2], ("lo", 772.0));
        assert_eq!(family(&f, "node_network_iface_id")[0], ("eth0", 4.0));
        assert_eq!(
            family(&f, "node_network_transmit_queue_length")[1],
            ("ifb0", 32.0)
        );
        assert_eq!(
            family(&f, "node_network_carrier_changes_total")[0],
            ("eth0", 2.0)
        );
        let changes = f
            .iter()
            .find(|f| f.name == "node_network_carrier_up_changes_total")
            .unwrap();
        assert_eq!(changes.kind, crate::exposition::MetricType::Counter);

        let info = f.iter().find(|f| f.name == "node_network_info").unwrap();
        let ifb0: Vec<(&str, &str)> = info.samples[1]
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            ifb0,
            [
                ("address", "62:a4:df:21:42:bc"),
                ("broadcast", "ff:ff:ff:ff:ff:ff"),
                ("device", "ifb0"),
                ("duplex", ""),
                ("ifalias", "uplink to rack 3"),
                ("operstate", "down"),
            ]
        );
        assert_eq!(info.samples[0].labels[3].1, "unknown");
    }

    #[test]
    fn flags_filter_devices_and_speeds() {
        let (_dir, paths) = fixture();
        let f = build_with(&paths, &["--collector.netclass.ignored-devices=^(lo|ifb)"])
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(family(&f, "node_network_up"), [("eth0", 1.0)]);
        let f = build_with(&paths, &["--collector.netclass.ignore-invalid-speed"])
            .unwrap()
            .collect()
            .unwrap();
        assert!(family(&f, "node_network_speed_bytes").is_empty());
        assert!(build_with(&paths, &["--collector.netclass.ignored-devices=("]).is_err());
    }

    #[test]
    fn speed_in_bytes_and_bad_values() {
        let (dir, paths) = fixture();
        let eth0 = dir.path().join("class/net/eth0");
        std::fs::write(eth0.join("speed"), "10000\n").unwrap();
        let c = build_with(&paths, &[]).unwrap();
        assert_eq!(
            family(&c.collect().unwrap(), "node_network_speed_bytes"),
            [("eth0", 1.25e9)]
        );
        std::fs::write(eth0.join("mtu"), "big\n").unwrap();
        let e = c.collect().unwrap_err();
        assert!(e.to_string().contains("eth0/mtu"), "{e}");
        std::fs::remove_dir_all(dir.path().join("class")).unwrap();
        assert!(matches!(c.collect(), Err(CollectError::NoData(_))));
    }

    #[test]
    fn reads_the_real_system() {
        let paths = Paths::default();
        let Ok(entries) = std::fs::read_dir(paths.sys("class/net")) else {
            return;
        };
        let ifaces = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .count();
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        assert_eq!(family(&f, "node_network_up").len(), ifaces);
        assert_eq!(family(&f, "node_network_mtu_bytes").len(), ifaces);
    }
}
