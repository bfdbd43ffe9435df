//! `cpu`: time each CPU spent per mode from /proc/stat
//! (`node_cpu_seconds_total`, `node_cpu_guest_seconds_total`), thermal
//! throttle counts from /sys, and with `--collector.cpu.info` the
//! /proc/cpuinfo identity of each CPU (`node_cpu_info`, and
//! `node_cpu_flag_info` / `node_cpu_bug_info` for the flags and bugs chosen
//! by the include patterns), as node_exporter 1.5's cpu collector does.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use clap::{Arg, ArgAction, ArgMatches};
use regex::Regex;

use super::stat::parse_proc_stat;
use super::util::{parse_error, read_string, ticks_per_second};
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "cpu",
    help: "Seconds each CPU spent per mode (node_cpu_seconds_total); CPU identity with --collector.cpu.info",
    default_enabled: true,
    configured: super::not_configured,
    flags,
    build,
};

const GUEST_FLAG: &str = "collector.cpu.guest";
const INFO_FLAG: &str = "collector.cpu.info";
const FLAGS_INCLUDE: &str = "collector.cpu.info.flags-include";
const BUGS_INCLUDE: &str = "collector.cpu.info.bugs-include";

/// The two switches of a kingpin-style boolean option, `--ID` and
/// `--no-ID` (node_exporter accepts both forms); the later one wins.
pub(super) fn bool_option_args(id: &'static str, help: &str, default: bool) -> [Arg; 2] {
    let no = format!("no-{id}");
    let state = if default {
        format!("default on; --{no} switches it off")
    } else {
        "default off".to_string()
    };
    [
        Arg::new(id)
            .long(id)
            .action(ArgAction::SetTrue)
            .overrides_with(no.clone())
            .help(format!("{help} ({state})")),
        Arg::new(no.clone())
            .long(no)
            .action(ArgAction::SetTrue)
            .overrides_with(id)
            .hide(true),
    ]
}

/// Reads a boolean option made by [`bool_option_args`]; `default` when
/// neither form was given (or the options are not registered at all).
pub(super) fn bool_option(matches: &ArgMatches, id: &str, default: bool) -> bool {
    let set = |id: &str| {
        matches
            .try_get_one::<bool>(id)
            .ok()
            .flatten()
            .copied()
            .unwrap_or(false)
    };
    if set(id) {
        true
    } else if set(&format!("no-{id}")) {
        false
    } else {
        default
    }
}

fn flags() -> Vec<clap::Arg> {
    let mut v: Vec<Arg> = bool_option_args(
        GUEST_FLAG,
        "Enables metric node_cpu_guest_seconds_total",
        true,
    )
    .into();
    v.extend(bool_option_args(
        INFO_FLAG,
        "Enables metric node_cpu_info",
        false,
    ));
    v.push(
        Arg::new(FLAGS_INCLUDE)
            .long(FLAGS_INCLUDE)
            .value_name("REGEX")
            .help("Report the `flags` of /proc/cpuinfo matching this pattern as node_cpu_flag_info (turns on --collector.cpu.info)"),
    );
    v.push(
        Arg::new(BUGS_INCLUDE)
            .long(BUGS_INCLUDE)
            .value_name("REGEX")
            .help("Report the `bugs` of /proc/cpuinfo matching this pattern as node_cpu_bug_info (turns on --collector.cpu.info)"),
    );
    v
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    // Like node_exporter: unanchored patterns, and giving one turns the
    // info metrics on.
    let compile = |id: &str| -> anyhow::Result<Option<Regex>> {
        ctx.flag(id)
            .filter(|p| !p.is_empty())
            .map(|p| {
                Regex::new(&p)
                    .map_err(|e| anyhow::anyhow!("--{id}: invalid regular expression: {e}"))
            })
            .transpose()
    };
    let flags_include = compile(FLAGS_INCLUDE)?;
    let bugs_include = compile(BUGS_INCLUDE)?;
    let info = bool_option(ctx.matches, INFO_FLAG, false)
        || flags_include.is_some()
        || bugs_include.is_some();
    Ok(Box::new(Cpu {
        paths: ctx.paths.clone(),
        guest: bool_option(ctx.matches, GUEST_FLAG, true),
        info,
        flags_include,
        bugs_include,
        last: Mutex::new(HashMap::new()),
    }))
}

/// Mode names of the first eight /proc/stat time fields.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];
/// Index of `idle` in the time fields.
const IDLE: usize = 3;
/// If a CPU's idle time drops by this many seconds or more, the CPU is taken
/// to have been unplugged and replugged and its history is forgotten.
const JUMP_BACK_SECONDS: f64 = 3.0;

struct Cpu {
    paths: Paths,
    guest: bool,
    info: bool,
    flags_include: Option<Regex>,
    bugs_include: Option<Regex>,
    /// Last reported seconds per CPU, so that counters never go backwards
    /// (some kernels and hypervisors briefly report smaller values).
    last: Mutex<HashMap<String, [f64; 10]>>,
}

impl Collector for Cpu {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let mut out = Vec::new();
        if self.info {
            out.extend(self.info_families()?);
        }
        out.extend(self.time_families()?);
        out.extend(self.throttle_families());
        Ok(out)
    }
}

impl Cpu {
    fn time_families(&self) -> Result<Vec<Family>, CollectError> {
        let path = self.paths.proc("stat");
        let stat = parse_proc_stat(&path, &read_string(&path)?)?;
        if stat.cpus.is_empty() {
            return Err(CollectError::Parse {
                path,
                message: "no cpuN lines".into(),
            });
        }
        let tps = ticks_per_second();
        let mut cpus: Vec<(String, [f64; 10])> = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            stat.cpus
                .iter()
                .map(|line| {
                    let now = line.ticks.map(|t| t as f64 / tps);
                    let prev = last.entry(line.id.clone()).or_insert([0.0; 10]);
                    if prev[IDLE] - now[IDLE] >= JUMP_BACK_SECONDS {
                        *prev = [0.0; 10];
                    }
                    for (p, n) in prev.iter_mut().zip(now) {
                        if n >= *p {
                            *p = n;
                        }
                    }
                    (line.id.clone(), *prev)
                })
                .collect()
        };
        cpus.sort_by_key(|(id, _)| id.parse::<u64>().unwrap_or(u64::MAX));

        let mut seconds = Family::counter(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
        );
        let mut guest = Family::counter(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
        );
        for (id, s) in &cpus {
            for (mode, v) in MODES.iter().zip(s) {
                seconds.push([("cpu", id.as_str()), ("mode", *mode)], *v);
            }
            // Guest time is also part of user and nice; like node_exporter
            // it is reported as is, not subtracted from them.
            guest.push([("cpu", id.as_str()), ("mode", "user")], s[8]);
            guest.push([("cpu", id.as_str()), ("mode", "nice")], s[9]);
        }
        let mut out = vec![seconds];
        if self.guest {
            out.push(guest);
        }
        Ok(out)
    }

    fn info_families(&self) -> Result<Vec<Family>, CollectError> {
        let path = self.paths.proc("cpuinfo");
        let cpus = parse_cpuinfo(&path, &read_string(&path)?)?;
        let mut info = Family::gauge("node_cpu_info", "CPU information from /proc/cpuinfo.");
        for c in &cpus {
            // Labels in name order, as node_exporter writes them.
            info.push(
                [
                    ("cachesize", c.cache_size.as_str()),
                    ("core", c.core_id.as_str()),
                    ("cpu", c.processor.as_str()),
                    ("family", c.family.as_str()),
                    ("microcode", c.microcode.as_str()),
                    ("model", c.model.as_str()),
                    ("model_name", c.model_name.as_str()),
                    ("package", c.physical_id.as_str()),
                    ("stepping", c.stepping.as_str()),
                    ("vendor", c.vendor.as_str()),
                ],
                1.0,
            );
        }
        let mut out = vec![info];
        // The flags and bugs of the first CPU only, as node_exporter does.
        if let Some(first) = cpus.first() {
            let mut list = |re: &Option<Regex>,
                            values: &[String],
                            name: &str,
                            label: &str,
                            what: &str| {
                if let Some(re) = re {
                    let mut f = Family::gauge(
                        name,
                        format!(
                            "The `{what}` field of CPU information from /proc/cpuinfo taken from the first core."
                        ),
                    );
                    for v in values.iter().filter(|v| re.is_match(v)) {
                        f.push([(label, v.as_str())], 1.0);
                    }
                    out.push(f);
                }
            };
            list(
                &self.flags_include,
                &first.flags,
                "node_cpu_flag_info",
                "flag",
                "flags",
            );
            list(
                &self.bugs_include,
                &first.bugs,
                "node_cpu_bug_info",
                "bug",
                "bugs",
            );
        }
        Ok(out)
    }

    /// `node_cpu_core_throttles_total` and `node_cpu_package_throttles_total`
    /// from /sys/devices/system/cpu/cpuN/{topology,thermal_throttle}. CPUs
    /// without these files (virtual machines, non-Intel) are skipped.
    fn throttle_families(&self) -> Vec<Family> {
        let base = self.paths.sys("devices/system/cpu");
        let Ok(entries) = std::fs::read_dir(&base) else {
            return Vec::new();
        };
        let read =
            |p: &Path| -> Option<u64> { super::util::read_regular(p).ok()?.trim().parse().ok() };
        let mut packages: BTreeMap<u64, Option<u64>> = BTreeMap::new();
        let mut cores: BTreeMap<(u64, u64), Option<u64>> = BTreeMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_cpu = name
                .strip_prefix("cpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !is_cpu {
                continue;
            }
            let dir = entry.path();
            let (Some(package), Some(core)) = (
                read(&dir.join("topology/physical_package_id")),
                read(&dir.join("topology/core_id")),
            ) else {
                continue;
            };
            cores
                .entry((package, core))
                .or_insert_with(|| read(&dir.join("thermal_throttle/core_throttle_count")));
            packages
                .entry(package)
                .or_insert_with(|| read(&dir.join("thermal_throttle/package_throttle_count")));
        }
        let mut out = Vec::new();
        let mut core_f = Family::counter(
            "node_cpu_core_throttles_total",
            "Number of times this CPU core has been throttled.",
        );
        for ((package, core), n) in cores {
            if let Some(n) = n {
                core_f.push(
                    [("core", core.to_string()), ("package", package.to_string())],
                    n as f64,
                );
            }
        }
        let mut package_f = Family::counter(
            "node_cpu_package_throttles_total",
            "Number of times this CPU package has been throttled.",
        );
        for (package, n) in packages {
            if let Some(n) = n {
                package_f.push([("package", package.to_string())], n as f64);
            }
        }
        for f in [core_f, package_f] {
            if !f.samples.is_empty() {
                out.push(f);
            }
        }
        out
    }
}

/// The /proc/cpuinfo fields node_cpu_info reports, for one CPU.
#[derive(Debug, Default, Clone, PartialEq)]
struct CpuInfo {
    processor: String,
    vendor: String,
    family: String,
    model: String,
    model_name: String,
    stepping: String,
    microcode: String,
    cache_size: String,
    physical_id: String,
    core_id: String,
    flags: Vec<String>,
    bugs: Vec<String>,
}

/// Parses /proc/cpuinfo: a block per CPU, each starting with `processor`.
/// Field names are the x86 ones (plus `vendor` and ARM's `Features`); other
/// fields are ignored, and fields a CPU lacks stay empty.
fn parse_cpuinfo(path: &Path, text: &str) -> Result<Vec<CpuInfo>, CollectError> {
    let mut cpus: Vec<CpuInfo> = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        // Values are everything after the first ": " (a field with an empty
        // value, like "power management:", has no space after the colon).
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let value = value.strip_prefix(' ').unwrap_or(value);
        if key == "processor" {
            if value.trim().parse::<u32>().is_err() {
                return Err(parse_error(
                    path,
                    idx + 1,
                    format!("processor: expected a CPU number, found {value:?}"),
                ));
            }
            cpus.push(CpuInfo {
                processor: value.trim().to_string(),
                ..CpuInfo::default()
            });
            continue;
        }
        let Some(cpu) = cpus.last_mut() else { continue };
        let slot = match key {
            "vendor" | "vendor_id" => &mut cpu.vendor,
            "cpu family" => &mut cpu.family,
            "model" => &mut cpu.model,
            "model name" => &mut cpu.model_name,
            "stepping" => &mut cpu.stepping,
            "microcode" => &mut cpu.microcode,
            "cache size" => &mut cpu.cache_size,
            "physical id" => &mut cpu.physical_id,
            "core id" => &mut cpu.core_id,
            "flags" | "Features" => {
                cpu.flags = value.split_whitespace().map(str::to_string).collect();
                continue;
            }
            "bugs" => {
                cpu.bugs = value.split_whitespace().map(str::to_string).collect();
                continue;
            }
            _ => continue,
        };
        *slot = value.to_string();
    }
    if cpus.is_empty() {
        return Err(CollectError::Parse {
            path: path.to_path_buf(),
            message: "no `processor` entries".into(),
        });
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::MetricType;

    /// /proc/stat of a 2-CPU Debian 12 VM (the `intr` line shortened).
    const PROC_STAT: &str = "\
cpu  15177 0 2627 73922 348 0 39 12 0 0
cpu0 7262 0 1042 37684 24 0 12 4 0 0
cpu1 7914 0 1584 36238 323 0 26 7 150 3
intr 171897 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 15 0 0
ctxt 295017
btime 1795609290
processes 8218
procs_running 1
procs_blocked 0
softirq 116881 0 15545 4 4578 35989 0 160 23844 0 36761
";

    /// The first CPU of this machine's /proc/cpuinfo, and the start of the second.
    const CPUINFO: &str = "\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
cpu MHz\t\t: 2596.142
cache size\t: 1024 KB
physical id\t: 0
siblings\t: 2
core id\t\t: 0
cpu cores\t: 2
apicid\t\t: 0
initial apicid\t: 0
fpu\t\t: yes
fpu_exception\t: yes
cpuid level\t: 28
wp\t\t: yes
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor avx2 avx512f
bugs\t\t: sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass srso spectre_v2_user
bogomips\t: 5192.28
TLB size\t: 3584 4K pages
clflush size\t: 64
cache_alignment\t: 64
address sizes\t: 48 bits physical, 48 bits virtual
power management:

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu vme
";

    fn cpu(procfs: &Path, sysfs: &Path, guest: bool, info: bool) -> Cpu {
        Cpu {
            paths: Paths {
                procfs: procfs.into(),
                sysfs: sysfs.into(),
                ..Paths::default()
            },
            guest,
            info,
            flags_include: None,
            bugs_include: None,
            last: Mutex::new(HashMap::new()),
        }
    }

    fn sample(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = families.iter().find(|f| f.name == name)?;
        f.samples
            .iter()
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), PROC_STAT).unwrap();
        std::fs::write(dir.path().join("cpuinfo"), CPUINFO).unwrap();
        dir
    }

    #[test]
    fn seconds_per_cpu_and_mode() {
        let dir = fixture();
        let f = cpu(dir.path(), dir.path(), true, false).collect().unwrap();
        let tps = ticks_per_second();
        let secs = f
            .iter()
            .find(|f| f.name == "node_cpu_seconds_total")
            .unwrap();
        assert_eq!(secs.kind, MetricType::Counter);
        assert_eq!(secs.samples.len(), 16);
        assert_eq!(
            secs.samples[0].labels,
            vec![
                ("cpu".to_string(), "0".to_string()),
                ("mode".to_string(), "user".to_string())
            ]
        );
        assert_eq!(
            sample(
                &f,
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "user")]
            ),
            Some(7262.0 / tps)
        );
        assert_eq!(
            sample(
                &f,
                "node_cpu_seconds_total",
                &[("cpu", "1"), ("mode", "idle")]
            ),
            Some(36238.0 / tps)
        );
        assert_eq!(
            sample(
                &f,
                "node_cpu_seconds_total",
                &[("cpu", "1"), ("mode", "iowait")]
            ),
            Some(323.0 / tps)
        );
        assert_eq!(
            sample(
                &f,
                "node_cpu_seconds_total",
                &[("cpu", "1"), ("mode", "steal")]
            ),
            Some(7.0 / tps)
        );
        // Guest time is reported as is and not taken out of user.
        assert_eq!(
            sample(
                &f,
                "node_cpu_seconds_total",
                &[("cpu", "1"), ("mode", "user")]
            ),
            Some(7914.0 / tps)
        );
        assert_eq!(
            sample(
                &f,
                "node_cpu_guest_seconds_total",
                &[("cpu", "1"), ("mode", "user")]
            ),
            Some(150.0 / tps)
        );
        assert_eq!(
            sample(
                &f,
                "node_cpu_guest_seconds_total",
                &[("cpu", "1"), ("mode", "nice")]
            ),
            Some(3.0 / tps)
        );
        // No cpuinfo unless asked, no throttles without sysfs files.
        assert!(
            f.iter()
                .all(|f| f.name != "node_cpu_info" && !f.name.contains("throttles"))
        );
        let f = cpu(dir.path(), dir.path(), false, false).collect().unwrap();
        assert!(f.iter().all(|f| f.name != "node_cpu_guest_seconds_total"));
    }

    #[test]
    fn counters_never_go_backwards_but_reset_on_hotplug() {
        let dir = fixture();
        let c = cpu(dir.path(), dir.path(), true, false);
        let tps = ticks_per_second();
        c.collect().unwrap();
        // user drops a little (a kernel glitch): the old value is kept.
        std::fs::write(
            dir.path().join("stat"),
            "cpu0 7000 0 1042 37690 24 0 12 4 0 0\n",
        )
        .unwrap();
        let f = c.collect().unwrap();
        assert_eq!(
            sample(
                &f,
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "user")]
            ),
            Some(7262.0 / tps)
        );
        assert_eq!(
            sample(
                &f,
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "idle")]
            ),
            Some(37690.0 / tps)
        );
        // cpu1 went offline: it is no longer reported.
        assert!(sample(&f, "node_cpu_seconds_total", &[("cpu", "1")]).is_none());
        // idle falls by far more than 3 s: the CPU was replugged, start over.
        std::fs::write(dir.path().join("stat"), "cpu0 10 0 20 30 0 0 0 0 0 0\n").unwrap();
        let f = c.collect().unwrap();
        assert_eq!(
            sample(
                &f,
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "user")]
            ),
            Some(10.0 / tps)
        );
    }

    #[test]
    fn cpu_info_labels_like_node_exporter() {
        let dir = fixture();
        let f = cpu(dir.path(), dir.path(), true, true).collect().unwrap();
        let info = f.iter().find(|f| f.name == "node_cpu_info").unwrap();
        assert_eq!(info.samples.len(), 2);
        let labels: Vec<(&str, &str)> = info.samples[0]
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("cachesize", "1024 KB"),
                ("core", "0"),
                ("cpu", "0"),
                ("family", "25"),
                ("microcode", "0x1000065"),
                ("model", "17"),
                ("model_name", "AMD EPYC"),
                ("package", "0"),
                ("stepping", "1"),
                ("vendor", "AuthenticAMD"),
            ]
        );
        // Missing fields are empty labels.
        assert_eq!(
            info.samples[1].labels[0],
            ("cachesize".to_string(), String::new())
        );
        assert_eq!(info.samples[1].labels[1].1, "1");
        // No include patterns: no flag or bug metrics.
        assert!(
            f.iter()
                .all(|f| f.name != "node_cpu_flag_info" && f.name != "node_cpu_bug_info")
        );
    }

    #[test]
    fn flags_and_bugs_of_the_first_cpu_by_pattern() {
        let dir = fixture();
        let mut c = cpu(dir.path(), dir.path(), true, true);
        c.flags_include = Some(Regex::new("^(avx2|sse4_2|x2apic)$").unwrap());
        c.bugs_include = Some(Regex::new("spectre").unwrap());
        let f = c.collect().unwrap();
        let flags = f.iter().find(|f| f.name == "node_cpu_flag_info").unwrap();
        let got: Vec<&str> = flags
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(got, ["sse4_2", "x2apic", "avx2"]);
        let bugs = f.iter().find(|f| f.name == "node_cpu_bug_info").unwrap();
        let got: Vec<&str> = bugs
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(got, ["spectre_v1", "spectre_v2", "spectre_v2_user"]);
        assert_eq!(bugs.samples[0].labels[0].0, "bug");
    }

    #[test]
    fn bad_cpuinfo_is_an_error() {
        let p = Path::new("/x/cpuinfo");
        assert!(parse_cpuinfo(p, "").is_err());
        let e = parse_cpuinfo(p, "processor\t: zero\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/cpuinfo") && e.contains("line 1"), "{e}");
        // ARM style: Features are the flags.
        let arm = parse_cpuinfo(
            p,
            "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm\n",
        )
        .unwrap();
        assert_eq!(arm[0].flags, ["fp", "asimd", "evtstrm"]);
    }

    #[test]
    fn thermal_throttles_from_sysfs() {
        let dir = fixture();
        let sys = tempfile::tempdir().unwrap();
        for (cpu, core, pkg_count, core_count) in [(0, 0, 7, 3), (1, 1, 7, 5), (2, 0, 7, 3)] {
            let d = sys.path().join(format!("devices/system/cpu/cpu{cpu}"));
            std::fs::create_dir_all(d.join("topology")).unwrap();
            std::fs::create_dir_all(d.join("thermal_throttle")).unwrap();
            std::fs::write(d.join("topology/physical_package_id"), "0\n").unwrap();
            std::fs::write(d.join("topology/core_id"), format!("{core}\n")).unwrap();
            std::fs::write(
                d.join("thermal_throttle/package_throttle_count"),
                format!("{pkg_count}\n"),
            )
            .unwrap();
            std::fs::write(
                d.join("thermal_throttle/core_throttle_count"),
                format!("{core_count}\n"),
            )
            .unwrap();
        }
        // Not a CPU directory.
        std::fs::create_dir_all(sys.path().join("devices/system/cpu/cpufreq")).unwrap();
        let f = cpu(dir.path(), sys.path(), true, false).collect().unwrap();
        let cores = f
            .iter()
            .find(|f| f.name == "node_cpu_core_throttles_total")
            .unwrap();
        assert_eq!(cores.samples.len(), 2);
        assert_eq!(
            sample(
                &f,
                "node_cpu_core_throttles_total",
                &[("core", "1"), ("package", "0")]
            ),
            Some(5.0)
        );
        assert_eq!(
            sample(&f, "node_cpu_package_throttles_total", &[("package", "0")]),
            Some(7.0)
        );
    }

    #[test]
    fn missing_stat_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            cpu(dir.path(), dir.path(), true, false).collect(),
            Err(CollectError::Io { .. })
        ));
    }

    #[test]
    fn flags_build_like_node_exporter() {
        let cmd = clap::Command::new("t").args(flags());
        let paths = Paths::default();
        let config = crate::config::Config::default();
        let built = |args: &[&str]| {
            let m = cmd.clone().try_get_matches_from(args).unwrap();
            let ctx = BuildContext {
                paths: &paths,
                matches: &m,
                config: &config,
                state_dir: None,
            };
            build(&ctx).map(|_| {
                (
                    bool_option(&m, GUEST_FLAG, true),
                    bool_option(&m, INFO_FLAG, false),
                )
            })
        };
        assert_eq!(built(&["t"]).unwrap(), (true, false));
        assert_eq!(
            built(&["t", "--no-collector.cpu.guest", "--collector.cpu.info"]).unwrap(),
            (false, true)
        );
        let err = built(&["t", "--collector.cpu.info.flags-include=("])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("collector.cpu.info.flags-include"), "{err}");
    }

    #[test]
    fn real_proc_is_sane() {
        let c = cpu(Path::new("/proc"), Path::new("/sys"), true, true);
        let f = c.collect().unwrap();
        let idle = sample(
            &f,
            "node_cpu_seconds_total",
            &[("cpu", "0"), ("mode", "idle")],
        )
        .unwrap();
        assert!(idle > 0.0);
        let secs = f
            .iter()
            .find(|f| f.name == "node_cpu_seconds_total")
            .unwrap();
        assert!(!secs.samples.is_empty() && secs.samples.len() % MODES.len() == 0);
        let info = f.iter().find(|f| f.name == "node_cpu_info").unwrap();
        assert!(
            info.samples
                .iter()
                .any(|s| s.labels.contains(&("cpu".to_string(), "0".to_string())))
        );
        // A second scrape never goes backwards.
        let g = c.collect().unwrap();
        let idle2 = sample(
            &g,
            "node_cpu_seconds_total",
            &[("cpu", "0"), ("mode", "idle")],
        )
        .unwrap();
        assert!(idle2 >= idle);
    }
}
