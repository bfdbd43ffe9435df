//! `time`: the system clock (`node_time_seconds`), the local time zone's
//! offset, and the kernel's clock sources.

use super::util::read_string;
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "time",
    help: "System time, time zone offset and clock sources (node_time_*)",
    default_enabled: true,
    configured: super::not_configured,
    flags: Vec::new,
    build,
};

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(Time {
        paths: ctx.paths.clone(),
    }))
}

struct Time {
    paths: Paths,
}

impl Collector for Time {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let now = jiff::Zoned::now();
        let mut t = Family::gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
        );
        t.push_value(now.timestamp().as_nanosecond() as f64 / 1e9);
        let info = now.time_zone().to_offset_info(now.timestamp());
        let mut z = Family::gauge(
            "node_time_zone_offset_seconds",
            "System time zone offset in seconds.",
        );
        z.push(
            [("time_zone", info.abbreviation().to_string())],
            info.offset().seconds() as f64,
        );
        let mut out = vec![t, z];
        out.extend(self.clocksources()?);
        Ok(out)
    }
}

impl Time {
    /// `node_time_clocksource_{available,current}_info` from
    /// /sys/devices/system/clocksource; empty where the kernel has none.
    fn clocksources(&self) -> Result<Vec<Family>, CollectError> {
        let dir = self.paths.sys("devices/system/clocksource");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut devices: Vec<(String, std::path::PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix("clocksource")?.to_string();
                n.parse::<u32>().ok()?;
                Some((n, e.path()))
            })
            .collect();
        devices.sort();
        let mut available = Family::gauge(
            "node_time_clocksource_available_info",
            "Available clocksources read from '/sys/devices/system/clocksource'.",
        );
        let mut current = Family::gauge(
            "node_time_clocksource_current_info",
            "Current clocksource read from '/sys/devices/system/clocksource'.",
        );
        for (n, path) in devices {
            for source in read_string(&path.join("available_clocksource"))?.split_whitespace() {
                available.push([("clocksource", source), ("device", n.as_str())], 1.0);
            }
            let cur = read_string(&path.join("current_clocksource"))?;
            current.push([("clocksource", cur.trim()), ("device", n.as_str())], 1.0);
        }
        Ok(vec![available, current])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_clocksources_and_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let cs = dir.path().join("devices/system/clocksource/clocksource0");
        std::fs::create_dir_all(&cs).unwrap();
        std::fs::write(cs.join("available_clocksource"), "tsc hpet acpi_pm \n").unwrap();
        std::fs::write(cs.join("current_clocksource"), "tsc\n").unwrap();
        let c = Time {
            paths: Paths {
                sysfs: dir.path().into(),
                ..Paths::default()
            },
        };
        let f = c.collect().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((f[0].samples[0].value - now).abs() < 5.0);
        assert_eq!(f[1].name, "node_time_zone_offset_seconds");
        assert_eq!(f[2].samples.len(), 3);
        assert_eq!(f[2].samples[1].labels[0].1, "hpet");
        assert_eq!(
            f[3].samples[0].labels,
            vec![
                ("clocksource".into(), "tsc".into()),
                ("device".into(), "0".into())
            ]
        );
        // No clocksource directory: the clock alone.
        let empty = tempfile::tempdir().unwrap();
        let c = Time {
            paths: Paths {
                sysfs: empty.path().into(),
                ..Paths::default()
            },
        };
        assert_eq!(c.collect().unwrap().len(), 2);
    }
}
