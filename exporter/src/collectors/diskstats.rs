//! `diskstats`: block device I/O counters from /proc/diskstats, plus the
//! device's identity from udev's database (`node_disk_info` and friends),
//! under node_exporter 1.5's names.

use std::collections::HashMap;
use std::path::Path;

use super::util::{DeviceFilter, parse_error, read_string};
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "diskstats",
    help: "Block device I/O statistics from /proc/diskstats (node_disk_*)",
    default_enabled: true,
    configured: super::not_configured,
    flags,
    build,
};

/// node_exporter's default: RAM disks, loop and floppy devices and partitions.
const DEFAULT_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

/// /proc/diskstats counts sectors of 512 bytes whatever the device's own
/// sector size (Documentation/admin-guide/iostats.rst).
const SECTOR_BYTES: f64 = 512.0;

/// Times in /proc/diskstats are milliseconds.
const MS: f64 = 1.0 / 1000.0;

fn flags() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new("collector.diskstats.device-exclude")
            .long("collector.diskstats.device-exclude")
            .alias("collector.diskstats.ignored-devices")
            .value_name("REGEX")
            .default_value(DEFAULT_EXCLUDE)
            .help("Regexp of diskstats devices to exclude (mutually exclusive to device-include)"),
        clap::Arg::new("collector.diskstats.device-include")
            .long("collector.diskstats.device-include")
            .value_name("REGEX")
            .help("Regexp of diskstats devices to include (mutually exclusive to device-exclude)"),
    ]
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    let filter = DeviceFilter::from_flags(ctx, "collector.diskstats.device")?;
    if !ctx.paths.udev_data.is_dir() {
        tracing::info!(
            path = %ctx.paths.udev_data.display(),
            "udev data directory not readable; node_disk_info labels will be empty"
        );
    }
    Ok(Box::new(DiskStats {
        paths: ctx.paths.clone(),
        filter,
    }))
}

struct DiskStats {
    paths: Paths,
    filter: DeviceFilter,
}

/// The counter and gauge families fed from one /proc/diskstats line, in
/// the line's field order: (name, help, is_counter).
const FIELDS: [(&str, &str, bool); 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        true,
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        true,
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        true,
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        true,
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        true,
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        true,
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        true,
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        true,
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        false,
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        true,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        true,
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        true,
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        true,
    ),
    (
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        true,
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        true,
    ),
    (
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        true,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        true,
    ),
];

/// The udev properties behind `node_disk_ata_*` (node_exporter 1.5).
const ATA_FIELDS: [(&str, &str, &str); 3] = [
    (
        "ID_ATA_WRITE_CACHE",
        "node_disk_ata_write_cache",
        "ATA disk has a write cache.",
    ),
    (
        "ID_ATA_WRITE_CACHE_ENABLED",
        "node_disk_ata_write_cache_enabled",
        "ATA disk has its write cache enabled.",
    ),
    (
        "ID_ATA_ROTATION_RATE_RPM",
        "node_disk_ata_rotation_rate_rpm",
        "ATA disk rotation rate in RPMs (0 for SSDs).",
    ),
];

/// The values of one /proc/diskstats line, already in the units exported,
/// in [`FIELDS`] order; discards and flushes only when the kernel has them.
fn line_values(d: &procfs::DiskStat) -> Vec<f64> {
    let mut v = vec![
        d.reads as f64,
        d.merged as f64,
        d.sectors_read as f64 * SECTOR_BYTES,
        d.time_reading as f64 * MS,
        d.writes as f64,
        d.writes_merged as f64,
        d.sectors_written as f64 * SECTOR_BYTES,
        d.time_writing as f64 * MS,
        d.in_progress as f64,
        d.time_in_progress as f64 * MS,
        d.weighted_time_in_progress as f64 * MS,
    ];
    // Kernels since 4.18 add the four discard fields, since 5.5 the two
    // flush fields; node_exporter exports a field only when it is present.
    if let (Some(n), Some(m), Some(s), Some(t)) = (
        d.discards,
        d.discards_merged,
        d.sectors_discarded,
        d.time_discarding,
    ) {
        v.extend([n as f64, m as f64, s as f64, t as f64 * MS]);
        if let (Some(n), Some(t)) = (d.flushes, d.time_flushing) {
            v.extend([n as f64, t as f64 * MS]);
        }
    }
    v
}

/// Reads udev's record of a block device (`b<major>:<minor>`), keeping its
/// `E:KEY=VALUE` properties. A missing record gives no properties, as in
/// node_exporter.
fn udev_properties(dir: &Path, major: i32, minor: i32) -> HashMap<String, String> {
    let path = dir.join(format!("b{major}:{minor}"));
    let Ok(text) = super::util::read_regular(&path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Collector for DiskStats {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let path = self.paths.proc("diskstats");
        let text = read_string(&path)?;
        let mut disks = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let d = procfs::DiskStat::from_line(line).map_err(|e| parse_error(&path, i + 1, e))?;
            if self.filter.allows(&d.name) {
                disks.push(d);
            }
        }
        disks.sort_by(|a, b| a.name.cmp(&b.name));

        let mut fields: Vec<Family> = FIELDS
            .iter()
            .map(|&(name, help, counter)| {
                if counter {
                    Family::counter(name, help)
                } else {
                    Family::gauge(name, help)
                }
            })
            .collect();
        let mut info = Family::gauge("node_disk_info", "Info of /sys/block/<block_device>.");
        let mut fs_info = Family::gauge("node_disk_filesystem_info", "Info about disk filesystem.");
        let mut dm_info = Family::gauge(
            "node_disk_device_mapper_info",
            "Info about disk device mapper.",
        );
        let mut ata: Vec<Family> = ATA_FIELDS
            .iter()
            .map(|&(_, name, help)| Family::gauge(name, help))
            .collect();

        for d in &disks {
            let dev = d.name.as_str();
            for (family, value) in fields.iter_mut().zip(line_values(d)) {
                family.push([("device", dev)], value);
            }

            let udev = udev_properties(&self.paths.udev_data, d.major, d.minor);
            let prop = |k: &str| udev.get(k).cloned().unwrap_or_default();
            info.push(
                [
                    ("device", dev.to_string()),
                    ("major", d.major.to_string()),
                    ("minor", d.minor.to_string()),
                    ("model", prop("ID_MODEL")),
                    ("path", prop("ID_PATH")),
                    ("revision", prop("ID_REVISION")),
                    ("serial", prop("ID_SERIAL_SHORT")),
                    ("wwn", prop("ID_WWN")),
                ],
                1.0,
            );
            let fs_type = prop("ID_FS_TYPE");
            if !fs_type.is_empty() {
                fs_info.push(
                    [
                        ("device", dev.to_string()),
                        ("type", fs_type),
                        ("usage", prop("ID_FS_USAGE")),
                        ("uuid", prop("ID_FS_UUID")),
                        ("version", prop("ID_FS_VERSION")),
                    ],
                    1.0,
                );
            }
            let dm_name = prop("DM_NAME");
            if !dm_name.is_empty() {
                dm_info.push(
                    [
                        ("device", dev.to_string()),
                        ("lv_layer", prop("DM_LV_LAYER")),
                        ("lv_name", prop("DM_LV_NAME")),
                        ("name", dm_name),
                        ("uuid", prop("DM_UUID")),
                        ("vg_name", prop("DM_VG_NAME")),
                    ],
                    1.0,
                );
            }
            if !prop("ID_ATA").is_empty() {
                for (family, &(key, _, _)) in ata.iter_mut().zip(ATA_FIELDS.iter()) {
                    match udev.get(key).map(|v| v.parse::<f64>()) {
                        Some(Ok(v)) => {
                            family.push([("device", dev)], v);
                        }
                        Some(Err(_)) => {
                            tracing::debug!(device = dev, key, "udev property is not a number")
                        }
                        None => {}
                    }
                }
            }
        }

        let mut out = vec![info, fs_info, dm_info];
        out.extend(fields);
        out.extend(ata);
        out.retain(|f| !f.samples.is_empty());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/diskstats of the development machine (kernel with flush fields),
    /// with an older 14-field line and an 18-field (4.18) line added.
    const DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 29244 5649 3258458 9616 7117 17572 1938304 5685 0 4908 15636 3989 49 252008 289 987 44
 254       1 vda1 2000 10 40000 300 100 5 800 50 0 200 350 0 0 0 0 0 0
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   8       0 sda 100 2 800 1500 50 3 400 250 1 1200 1750
   8      16 sdb 10 0 80 15 5 0 40 25 0 12 40 7 1 56 9
";

    /// A udev record as systemd-udevd writes it for a SATA disk.
    const UDEV_SDA: &str = "S:disk/by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A
W:1
I:4203547
E:ID_ATA=1
E:ID_TYPE=disk
E:ID_BUS=ata
E:ID_MODEL=Samsung_SSD_860_EVO_500GB
E:ID_REVISION=RVT04B6Q
E:ID_SERIAL=Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A
E:ID_SERIAL_SHORT=S3Z1NB0K123456A
E:ID_ATA_WRITE_CACHE=1
E:ID_ATA_WRITE_CACHE_ENABLED=1
E:ID_ATA_ROTATION_RATE_RPM=0
E:ID_WWN=0x5002538e40a1b2c3
E:ID_PATH=pci-0000:00:17.0-ata-1
E:ID_PART_TABLE_TYPE=gpt
G:systemd
";

    fn fixture() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let udev = dir.path().join("udev");
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::create_dir_all(&udev).unwrap();
        std::fs::write(proc.join("diskstats"), DISKSTATS).unwrap();
        std::fs::write(udev.join("b8:0"), UDEV_SDA).unwrap();
        std::fs::write(
            udev.join("b8:16"),
            "E:ID_FS_TYPE=LVM2_member\nE:ID_FS_USAGE=raid\nE:ID_FS_UUID=abc-123\nE:ID_FS_VERSION=LVM2 001\n\
             E:DM_NAME=vg0-root\nE:DM_UUID=LVM-xyz\nE:DM_VG_NAME=vg0\nE:DM_LV_NAME=root\n",
        )
        .unwrap();
        let paths = Paths {
            procfs: proc,
            udev_data: udev,
            ..Paths::default()
        };
        (dir, paths)
    }

    fn build_with(paths: &Paths, args: &[&str]) -> anyhow::Result<Box<dyn Collector>> {
        crate::collectors::testutil::build_with(&SPEC, paths, args)
    }

    fn value(fams: &[Family], name: &str, device: &str) -> Option<f64> {
        fams.iter()
            .find(|f| f.name == name)?
            .samples
            .iter()
            .find(|s| s.labels.iter().any(|(k, v)| k == "device" && v == device))
            .map(|s| s.value)
    }

    fn assert_close(got: Option<f64>, want: f64) {
        let got = got.expect("sample missing");
        assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
    }

    fn devices(fams: &[Family], name: &str) -> Vec<String> {
        fams.iter()
            .find(|f| f.name == name)
            .map(|f| f.samples.iter().map(|s| s.labels[0].1.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn converts_units_like_node_exporter() {
        let (_dir, paths) = fixture();
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        assert_eq!(
            value(&f, "node_disk_reads_completed_total", "vda"),
            Some(29244.0)
        );
        assert_eq!(
            value(&f, "node_disk_reads_merged_total", "vda"),
            Some(5649.0)
        );
        assert_eq!(
            value(&f, "node_disk_read_bytes_total", "vda"),
            Some(3258458.0 * 512.0)
        );
        assert_close(value(&f, "node_disk_read_time_seconds_total", "vda"), 9.616);
        assert_eq!(
            value(&f, "node_disk_writes_completed_total", "vda"),
            Some(7117.0)
        );
        assert_eq!(
            value(&f, "node_disk_writes_merged_total", "vda"),
            Some(17572.0)
        );
        assert_eq!(
            value(&f, "node_disk_written_bytes_total", "vda"),
            Some(1938304.0 * 512.0)
        );
        assert_close(
            value(&f, "node_disk_write_time_seconds_total", "vda"),
            5.685,
        );
        assert_eq!(value(&f, "node_disk_io_now", "vda"), Some(0.0));
        assert_close(value(&f, "node_disk_io_time_seconds_total", "vda"), 4.908);
        assert_close(
            value(&f, "node_disk_io_time_weighted_seconds_total", "vda"),
            15.636,
        );
        assert_eq!(
            value(&f, "node_disk_discards_completed_total", "vda"),
            Some(3989.0)
        );
        assert_eq!(
            value(&f, "node_disk_discards_merged_total", "vda"),
            Some(49.0)
        );
        // Discarded sectors stay sectors, as in node_exporter.
        assert_eq!(
            value(&f, "node_disk_discarded_sectors_total", "vda"),
            Some(252008.0)
        );
        assert_close(
            value(&f, "node_disk_discard_time_seconds_total", "vda"),
            0.289,
        );
        assert_eq!(
            value(&f, "node_disk_flush_requests_total", "vda"),
            Some(987.0)
        );
        assert_close(
            value(&f, "node_disk_flush_requests_time_seconds_total", "vda"),
            0.044,
        );
        let io_now = f.iter().find(|f| f.name == "node_disk_io_now").unwrap();
        assert_eq!(io_now.kind, crate::exposition::MetricType::Gauge);
        let reads = f
            .iter()
            .find(|f| f.name == "node_disk_reads_completed_total")
            .unwrap();
        assert_eq!(reads.kind, crate::exposition::MetricType::Counter);
    }

    #[test]
    fn optional_fields_follow_the_line_length() {
        let (_dir, paths) = fixture();
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        // 14-field line: no discards, no flushes.
        assert_close(
            value(&f, "node_disk_io_time_weighted_seconds_total", "sda"),
            1.75,
        );
        assert_eq!(value(&f, "node_disk_discards_completed_total", "sda"), None);
        // 18-field line: discards but no flushes.
        assert_close(
            value(&f, "node_disk_discard_time_seconds_total", "sdb"),
            0.009,
        );
        assert_eq!(value(&f, "node_disk_flush_requests_total", "sdb"), None);
    }

    #[test]
    fn default_exclude_drops_loops_and_partitions() {
        let (_dir, paths) = fixture();
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        assert_eq!(
            devices(&f, "node_disk_reads_completed_total"),
            ["sda", "sdb", "vda", "zram0"]
        );
        let f = build_with(&paths, &["--collector.diskstats.device-exclude=d"])
            .unwrap()
            .collect()
            .unwrap();
        // Unanchored, as node_exporter: "d" matches every name containing it.
        assert_eq!(
            devices(&f, "node_disk_reads_completed_total"),
            ["loop0", "loop1", "zram0"]
        );
        let f = build_with(&paths, &["--collector.diskstats.device-include=^vda"])
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(
            devices(&f, "node_disk_reads_completed_total"),
            ["vda", "vda1"]
        );
        let f = build_with(
            &paths,
            &["--collector.diskstats.ignored-devices=^(loop|sd)"],
        )
        .unwrap()
        .collect()
        .unwrap();
        assert_eq!(devices(&f, "node_disk_info"), ["vda", "vda1", "zram0"]);
        assert!(
            build_with(
                &paths,
                &[
                    "--collector.diskstats.device-include=a",
                    "--collector.diskstats.device-exclude=b"
                ]
            )
            .is_err()
        );
        assert!(build_with(&paths, &["--collector.diskstats.device-include=("]).is_err());
    }

    #[test]
    fn udev_properties_become_labels_and_metrics() {
        let (_dir, paths) = fixture();
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        let info = f.iter().find(|f| f.name == "node_disk_info").unwrap();
        let sda = info
            .samples
            .iter()
            .find(|s| s.labels[0].1 == "sda")
            .unwrap();
        let labels: Vec<(&str, &str)> = sda
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("device", "sda"),
                ("major", "8"),
                ("minor", "0"),
                ("model", "Samsung_SSD_860_EVO_500GB"),
                ("path", "pci-0000:00:17.0-ata-1"),
                ("revision", "RVT04B6Q"),
                ("serial", "S3Z1NB0K123456A"),
                ("wwn", "0x5002538e40a1b2c3"),
            ]
        );
        // No udev record: the labels are there, empty.
        let vda = info
            .samples
            .iter()
            .find(|s| s.labels[0].1 == "vda")
            .unwrap();
        assert!(vda.labels[3..].iter().all(|(_, v)| v.is_empty()));
        assert_eq!(vda.labels[1].1, "254");
        assert_eq!(
            value(&f, "node_disk_ata_write_cache_enabled", "sda"),
            Some(1.0)
        );
        assert_eq!(
            value(&f, "node_disk_ata_rotation_rate_rpm", "sda"),
            Some(0.0)
        );
        assert_eq!(devices(&f, "node_disk_ata_write_cache"), ["sda"]);
        let fs = f
            .iter()
            .find(|f| f.name == "node_disk_filesystem_info")
            .unwrap();
        assert_eq!(fs.samples.len(), 1);
        assert_eq!(
            fs.samples[0].labels[1],
            ("type".to_string(), "LVM2_member".to_string())
        );
        assert_eq!(
            fs.samples[0].labels[4],
            ("version".to_string(), "LVM2 001".to_string())
        );
        let dm = f
            .iter()
            .find(|f| f.name == "node_disk_device_mapper_info")
            .unwrap();
        assert_eq!(
            dm.samples[0].labels[3],
            ("name".to_string(), "vg0-root".to_string())
        );
        assert_eq!(
            dm.samples[0].labels[5],
            ("vg_name".to_string(), "vg0".to_string())
        );
    }

    #[test]
    fn missing_udev_directory_gives_empty_labels() {
        let (dir, mut paths) = fixture();
        paths.udev_data = dir.path().join("no-such-dir");
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        let info = f.iter().find(|f| f.name == "node_disk_info").unwrap();
        assert_eq!(info.samples.len(), 4);
        assert!(
            info.samples
                .iter()
                .all(|s| s.labels[3..].iter().all(|(_, v)| v.is_empty()))
        );
        assert!(!f.iter().any(|f| f.name == "node_disk_ata_write_cache"));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let (dir, paths) = fixture();
        std::fs::write(dir.path().join("proc/diskstats"), "   8 0 sda 1 2 3\n").unwrap();
        let e = build_with(&paths, &[]).unwrap().collect().unwrap_err();
        assert!(matches!(e, CollectError::Parse { .. }));
        assert!(
            e.to_string().contains("diskstats") && e.to_string().contains("line 1"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("proc/diskstats")).unwrap();
        assert!(matches!(
            build_with(&paths, &[]).unwrap().collect(),
            Err(CollectError::Io { .. })
        ));
    }

    #[test]
    fn reads_the_real_system() {
        let paths = Paths::default();
        if !paths.proc("diskstats").exists() {
            return;
        }
        let text = std::fs::read_to_string(paths.proc("diskstats")).unwrap();
        let f = build_with(&paths, &["--collector.diskstats.device-exclude="])
            .unwrap()
            .collect()
            .unwrap();
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(devices(&f, "node_disk_info").len(), lines);
        assert_eq!(devices(&f, "node_disk_io_now").len(), lines);
    }
}
