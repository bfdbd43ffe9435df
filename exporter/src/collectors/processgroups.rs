//! `processgroups`: groups of processes reported together, with
//! process-exporter's metric names (`namedprocess_namegroup_*{groupname}`) so
//! that its dashboards work unchanged.
//!
//! Groups come from the config file's `process_groups` list. A process
//! belongs to the first group it matches, decided when it is first seen (and
//! again if its command name changes, i.e. after an `exec`), as
//! process-exporter does. Counters (CPU, I/O, page faults, context switches)
//! never go down: the usage of processes that have exited stays in their
//! group's totals, and a process contributes only what it used since the last
//! scrape, so a counter does not reset when a process ends.
//!
//! Everything is read from `/proc/PID/{stat,status,io,cmdline,limits,fd}`
//! below `--path.procfs`, parsed directly (procfs' `Status` insists on dozens
//! of fields this collector does not need). A process that exits during the
//! walk is skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;

use super::{BuildContext, CollectError, Collector, Spec};
use crate::config::KeyError;
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "processgroups",
    help: "Process groups from the config file's process_groups (namedprocess_namegroup_*, as process-exporter)",
    default_enabled: false,
    configured: |config| !config.process_groups.is_empty(),
    flags: Vec::new,
    build,
};

/// The group name that makes one group per command name.
pub const COMM_TEMPLATE: &str = "{{.Comm}}";

/// The kernel keeps at most this many bytes of a command name.
const COMM_MAX: usize = 15;

/// One entry of the config file's `process_groups`: a group name and what a
/// process must look like to belong to it. Every matcher that is given must
/// match; within `comm` and `exe` any one entry is enough.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessGroupConfig {
    /// The `groupname` label: a literal name, or `{{.Comm}}` for one group
    /// per command name.
    pub name: String,
    /// Command names (`/proc/PID/comm`, at most 15 bytes), compared exactly.
    #[serde(default)]
    pub comm: Vec<String>,
    /// Executables, compared with `argv[0]` as process-exporter does: a
    /// plain name matches `argv[0]`'s base name, a path (with `/`) must equal
    /// `argv[0]`.
    #[serde(default)]
    pub exe: Vec<String>,
    /// Regular expressions that must all match the command line (arguments
    /// joined by spaces; unanchored).
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Only processes whose effective user is this (a name from the host's
    /// `/etc/passwd`, or a numeric uid).
    #[serde(default, deserialize_with = "name_or_id")]
    pub user: Option<String>,
}

impl ProcessGroupConfig {
    /// Checks what the schema cannot: a usable name, at least one matcher,
    /// command names the kernel can report, regular expressions that compile.
    /// Keys are relative to the entry (`.cmdline[1]`).
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.name.trim().is_empty() {
            return Err(KeyError::new(".name", "must not be empty"));
        }
        if self.name.contains("{{") && self.name != COMM_TEMPLATE {
            return Err(KeyError::new(
                ".name",
                format!(
                    "the only supported template is {COMM_TEMPLATE} (one group per command name); other names are used literally and must not contain '{{{{'"
                ),
            ));
        }
        if self.comm.is_empty()
            && self.exe.is_empty()
            && self.cmdline.is_empty()
            && self.user.is_none()
        {
            return Err(KeyError::new(
                "",
                "needs at least one matcher: comm, exe, cmdline or user",
            ));
        }
        for (i, c) in self.comm.iter().enumerate() {
            if c.is_empty() {
                return Err(KeyError::new(format!(".comm[{i}]"), "must not be empty"));
            }
            if c.len() > COMM_MAX {
                return Err(KeyError::new(
                    format!(".comm[{i}]"),
                    format!(
                        "{c:?} is longer than {COMM_MAX} bytes, and the kernel cuts command names to {COMM_MAX} bytes, so it can never match; use exe or cmdline"
                    ),
                ));
            }
        }
        for (i, e) in self.exe.iter().enumerate() {
            if e.is_empty() || e.ends_with('/') {
                return Err(KeyError::new(
                    format!(".exe[{i}]"),
                    "must be an executable name or path",
                ));
            }
        }
        for (i, r) in self.cmdline.iter().enumerate() {
            regex::Regex::new(r).map_err(|e| {
                KeyError::new(
                    format!(".cmdline[{i}]"),
                    format!("invalid regular expression: {e}"),
                )
            })?;
        }
        if let Some(u) = &self.user
            && u.trim().is_empty()
        {
            return Err(KeyError::new(
                ".user",
                "must be a user name or a numeric uid",
            ));
        }
        Ok(())
    }
}

/// Accepts `user: postgres` as well as `user: 1000`.
fn name_or_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a user name or a numeric uid")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if v < 0 {
                return Err(E::custom("a uid cannot be negative"));
            }
            Ok(Some(v.to_string()))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    if ctx.config.process_groups.is_empty() {
        anyhow::bail!(
            "no process groups configured: add process_groups to the config file (--config.file)"
        );
    }
    let passwd = ctx.paths.root("/etc/passwd");
    let groups = ctx
        .config
        .process_groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            Group::compile(g, &passwd)
                .map_err(|e| anyhow::anyhow!("process_groups[{i}]{}: {}", e.key, e.message))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Box::new(ProcessGroups::new(ctx.paths.clone(), groups)))
}

/// A group's matchers, ready to use.
struct Group {
    /// `None` for `{{.Comm}}`.
    name: Option<String>,
    comm: Vec<String>,
    /// (base name, full path if one was given).
    exe: Vec<(String, Option<String>)>,
    cmdline: Vec<regex::Regex>,
    uid: Option<u32>,
}

impl Group {
    fn compile(c: &ProcessGroupConfig, passwd: &Path) -> Result<Group, KeyError> {
        c.validate()?;
        let exe = c
            .exe
            .iter()
            .map(|e| match e.rsplit_once('/') {
                Some((_, base)) => (base.to_string(), Some(e.clone())),
                None => (e.clone(), None),
            })
            .collect();
        let cmdline = c
            .cmdline
            .iter()
            .enumerate()
            .map(|(i, r)| {
                regex::Regex::new(r).map_err(|e| {
                    KeyError::new(
                        format!(".cmdline[{i}]"),
                        format!("invalid regular expression: {e}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let uid = c
            .user
            .as_deref()
            .map(|u| resolve_user(u.trim(), passwd))
            .transpose()?;
        Ok(Group {
            name: (c.name != COMM_TEMPLATE).then(|| c.name.clone()),
            comm: c.comm.clone(),
            exe,
            cmdline,
            uid,
        })
    }

    /// The group name for a process, if it matches.
    fn matches(&self, p: &Identity) -> Option<String> {
        if !self.comm.is_empty() && !self.comm.contains(&p.comm) {
            return None;
        }
        if !self.exe.is_empty() {
            let argv0 = p.cmdline.first().map(String::as_str).unwrap_or("");
            let base = argv0.rsplit('/').next().unwrap_or(argv0);
            let hit = !argv0.is_empty()
                && self
                    .exe
                    .iter()
                    .any(|(b, full)| b == base && full.as_deref().is_none_or(|f| f == argv0));
            if !hit {
                return None;
            }
        }
        if !self.cmdline.is_empty() {
            let joined = p.cmdline.join(" ");
            if !self.cmdline.iter().all(|r| r.is_match(&joined)) {
                return None;
            }
        }
        if let Some(uid) = self.uid
            && p.euid != Some(uid)
        {
            return None;
        }
        Some(self.name.clone().unwrap_or_else(|| p.comm.clone()))
    }
}

/// A user name or numeric uid as a uid, names looked up in the host's
/// passwd file (under `--path.rootfs`).
fn resolve_user(user: &str, passwd: &Path) -> Result<u32, KeyError> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    let text = std::fs::read_to_string(passwd).map_err(|e| {
        KeyError::new(
            ".user",
            format!("cannot look up {user:?}: reading {}: {e}", passwd.display()),
        )
    })?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse::<u32>().ok()?;
            (name == user).then_some(uid)
        })
        .next()
        .ok_or_else(|| {
            KeyError::new(
                ".user",
                format!(
                    "no user {user:?} in {}; give the numeric uid instead",
                    passwd.display()
                ),
            )
        })
}

/// What grouping looks at.
struct Identity {
    comm: String,
    cmdline: Vec<String>,
    euid: Option<u32>,
}

/// The fields of `/proc/PID/stat` this collector uses.
#[derive(Debug, Clone, PartialEq)]
struct Stat {
    comm: String,
    state: char,
    minflt: u64,
    majflt: u64,
    utime: u64,
    stime: u64,
    num_threads: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may itself contain spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm,
        state: f.first()?.chars().next()?,
        minflt: n(7)?,
        majflt: n(9)?,
        utime: n(11)?,
        stime: n(12)?,
        num_threads: f.get(17)?.parse::<i64>().ok()?.max(0) as u64,
        starttime: n(19)?,
        vsize: n(20)?,
        rss_pages: f.get(21)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// The fields of `/proc/PID/status` this collector uses.
#[derive(Debug, Default, Clone, PartialEq)]
struct Status {
    euid: Option<u32>,
    swap_bytes: u64,
    voluntary_ctxt: Option<u64>,
    nonvoluntary_ctxt: Option<u64>,
}

fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut words = value.split_whitespace();
        match key {
            "Uid" => s.euid = words.nth(1).and_then(|v| v.parse().ok()),
            "VmSwap" => {
                s.swap_bytes = words
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            }
            "voluntary_ctxt_switches" => {
                s.voluntary_ctxt = words.next().and_then(|v| v.parse().ok())
            }
            "nonvoluntary_ctxt_switches" => {
                s.nonvoluntary_ctxt = words.next().and_then(|v| v.parse().ok())
            }
            _ => {}
        }
    }
    s
}

/// `read_bytes` and `write_bytes` of `/proc/PID/io`.
fn parse_io(text: &str) -> Option<(u64, u64)> {
    let mut read = None;
    let mut write = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("read_bytes:") {
            read = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("write_bytes:") {
            write = v.trim().parse().ok();
        }
    }
    Some((read?, write?))
}

/// The soft "Max open files" of `/proc/PID/limits`; `None` when unlimited.
fn parse_max_open_files(text: &str) -> Option<u64> {
    let rest = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Cumulative counters of one process, as last read.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    user_ticks: u64,
    system_ticks: u64,
    minflt: u64,
    majflt: u64,
    io: Option<(u64, u64)>,
    voluntary_ctxt: Option<u64>,
    nonvoluntary_ctxt: Option<u64>,
}

/// Totals of a group that never go down.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Totals {
    user_ticks: u64,
    system_ticks: u64,
    minflt: u64,
    majflt: u64,
    read_bytes: u64,
    write_bytes: u64,
    voluntary_ctxt: u64,
    nonvoluntary_ctxt: u64,
}

impl Totals {
    /// Adds what a process used between `before` (or its start) and `now`.
    fn add(&mut self, now: &Counters, before: Option<&Counters>) {
        let d = |n: u64, b: Option<u64>| n.saturating_sub(b.unwrap_or(0));
        self.user_ticks += d(now.user_ticks, before.map(|b| b.user_ticks));
        self.system_ticks += d(now.system_ticks, before.map(|b| b.system_ticks));
        self.minflt += d(now.minflt, before.map(|b| b.minflt));
        self.majflt += d(now.majflt, before.map(|b| b.majflt));
        // Optional counters: a delta only when both readings exist (a value
        // that became readable later is taken as the new baseline).
        let opt = |n: Option<u64>, b: Option<Option<u64>>| match (n, b) {
            (Some(n), None) => n,
            (Some(n), Some(Some(b))) => n.saturating_sub(b),
            _ => 0,
        };
        self.read_bytes += opt(now.io.map(|io| io.0), before.map(|b| b.io.map(|io| io.0)));
        self.write_bytes += opt(now.io.map(|io| io.1), before.map(|b| b.io.map(|io| io.1)));
        self.voluntary_ctxt += opt(now.voluntary_ctxt, before.map(|b| b.voluntary_ctxt));
        self.nonvoluntary_ctxt += opt(now.nonvoluntary_ctxt, before.map(|b| b.nonvoluntary_ctxt));
    }
}

/// Point-in-time values of a group, summed over its live processes.
#[derive(Debug, Default, Clone, PartialEq)]
struct Gauges {
    procs: u64,
    threads: u64,
    resident: u64,
    virtual_bytes: u64,
    swapped: u64,
    open_fds: u64,
    worst_fd_ratio: f64,
    oldest_start: Option<f64>,
    running: u64,
    sleeping: u64,
    waiting: u64,
    zombie: u64,
    other: u64,
}

/// A process seen before: its group (or none) and its last counters.
struct Tracked {
    comm: String,
    group: Option<String>,
    last: Counters,
}

#[derive(Default)]
struct State {
    /// Keyed by (pid, start time), so a reused pid is a new process.
    procs: HashMap<(u32, u64), Tracked>,
    totals: BTreeMap<String, Totals>,
    procread_errors: u64,
    partial_errors: u64,
}

struct ProcessGroups {
    paths: Paths,
    groups: Vec<Group>,
    needs_cmdline: bool,
    needs_uid: bool,
    state: Mutex<State>,
}

impl ProcessGroups {
    fn new(paths: Paths, groups: Vec<Group>) -> ProcessGroups {
        let mut state = State::default();
        // Named groups are reported from the start, with zero processes when
        // none match (so that "no process running" can be alerted on).
        for g in &groups {
            if let Some(name) = &g.name {
                state.totals.entry(name.clone()).or_default();
            }
        }
        ProcessGroups {
            needs_cmdline: groups
                .iter()
                .any(|g| !g.exe.is_empty() || !g.cmdline.is_empty()),
            needs_uid: groups.iter().any(|g| g.uid.is_some()),
            paths,
            groups,
            state: Mutex::new(state),
        }
    }

    fn classify(&self, id: &Identity) -> Option<String> {
        self.groups.iter().find_map(|g| g.matches(id))
    }
}

impl Collector for ProcessGroups {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let stat_path = self.paths.proc("stat");
        let stat_text = super::util::read_string(&stat_path)?;
        let boot = parse_btime(&stat_text)
            .ok_or_else(|| super::util::parse_error(&stat_path, 1, "no btime line"))?;
        let tps = super::util::ticks_per_second();
        let page = procfs::page_size();

        let entries = std::fs::read_dir(&self.paths.procfs).map_err(|source| CollectError::Io {
            path: self.paths.procfs.clone(),
            source,
        })?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut gauges: BTreeMap<String, Gauges> = state
            .totals
            .keys()
            .map(|k| (k.clone(), Gauges::default()))
            .collect();
        let mut seen: HashSet<(u32, u64)> = HashSet::new();

        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let dir = entry.path();
            // Gone already (or unreadable): skip it.
            let Some(stat) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
            else {
                continue;
            };
            let key = (pid, stat.starttime);
            let previous = state.procs.get(&key);
            let known_group = previous
                .filter(|t| t.comm == stat.comm)
                .map(|t| t.group.clone());
            let mut status = None;
            let group = match known_group {
                Some(g) => g,
                None => {
                    if self.needs_uid {
                        status = read_opt(&dir.join("status")).map(|t| parse_status(&t));
                    }
                    let id = Identity {
                        comm: stat.comm.clone(),
                        cmdline: if self.needs_cmdline {
                            read_cmdline(&dir)
                        } else {
                            Vec::new()
                        },
                        euid: status.as_ref().and_then(|s| s.euid),
                    };
                    self.classify(&id)
                }
            };
            let Some(group) = group else {
                // Remembered so that its command line is not read again.
                state.procs.insert(
                    key,
                    Tracked {
                        comm: stat.comm,
                        group: None,
                        last: Counters::default(),
                    },
                );
                seen.insert(key);
                continue;
            };

            let status = match status {
                Some(s) => Some(s),
                None => read_opt(&dir.join("status")).map(|t| parse_status(&t)),
            };
            let Some(status) = status else {
                // Exited between reading stat and status: just skip it.
                // Otherwise count the failure and keep what is known about
                // the process, so that it is not counted afresh next time.
                if dir.exists() {
                    state.procread_errors += 1;
                    if state.procs.contains_key(&key) {
                        seen.insert(key);
                    }
                }
                continue;
            };
            let io = read_opt(&dir.join("io")).and_then(|t| parse_io(&t));
            let fds = std::fs::read_dir(dir.join("fd"))
                .ok()
                .map(|d| d.count() as u64);
            let max_fds = read_opt(&dir.join("limits")).and_then(|t| parse_max_open_files(&t));
            if io.is_none() || fds.is_none() {
                state.partial_errors += 1;
            }

            let now = Counters {
                user_ticks: stat.utime,
                system_ticks: stat.stime,
                minflt: stat.minflt,
                majflt: stat.majflt,
                io,
                voluntary_ctxt: status.voluntary_ctxt,
                nonvoluntary_ctxt: status.nonvoluntary_ctxt,
            };
            // A process that matched no group until now (its command changed)
            // counts as new: all its usage goes to its new group.
            let before = state
                .procs
                .get(&key)
                .filter(|t| t.group.is_some())
                .map(|t| t.last);
            state
                .totals
                .entry(group.clone())
                .or_default()
                .add(&now, before.as_ref());

            let g = gauges.entry(group.clone()).or_default();
            g.procs += 1;
            g.threads += stat.num_threads;
            g.resident += stat.rss_pages * page;
            g.virtual_bytes += stat.vsize;
            g.swapped += status.swap_bytes;
            if let Some(n) = fds {
                g.open_fds += n;
                if let Some(max) = max_fds.filter(|&m| m > 0) {
                    g.worst_fd_ratio = g.worst_fd_ratio.max(n as f64 / max as f64);
                }
            }
            let start = boot as f64 + stat.starttime as f64 / tps;
            g.oldest_start = Some(g.oldest_start.map_or(start, |o: f64| o.min(start)));
            match stat.state {
                'R' => g.running += 1,
                'S' => g.sleeping += 1,
                'D' => g.waiting += 1,
                'Z' => g.zombie += 1,
                _ => g.other += 1,
            }
            state.procs.insert(
                key,
                Tracked {
                    comm: stat.comm,
                    group: Some(group),
                    last: now,
                },
            );
            seen.insert(key);
        }
        state.procs.retain(|k, _| seen.contains(k));
        Ok(families(&state, &gauges, tps))
    }
}

fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The arguments of `/proc/PID/cmdline` (empty for kernel threads and zombies).
fn read_cmdline(dir: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(dir.join("cmdline")) else {
        return Vec::new();
    };
    bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn families(state: &State, gauges: &BTreeMap<String, Gauges>, tps: f64) -> Vec<Family> {
    let mut num_procs = Family::gauge(
        "namedprocess_namegroup_num_procs",
        "Number of processes in this group.",
    );
    let mut cpu = Family::counter(
        "namedprocess_namegroup_cpu_seconds_total",
        "CPU time used by the processes of this group, by mode, in seconds.",
    );
    let mut read = Family::counter(
        "namedprocess_namegroup_read_bytes_total",
        "Bytes read from storage by this group (from /proc/PID/io where readable).",
    );
    let mut write = Family::counter(
        "namedprocess_namegroup_write_bytes_total",
        "Bytes written to storage by this group (from /proc/PID/io where readable).",
    );
    let mut major = Family::counter(
        "namedprocess_namegroup_major_page_faults_total",
        "Major page faults.",
    );
    let mut minor = Family::counter(
        "namedprocess_namegroup_minor_page_faults_total",
        "Minor page faults.",
    );
    let mut ctx = Family::counter(
        "namedprocess_namegroup_context_switches_total",
        "Context switches.",
    );
    let mut memory = Family::gauge(
        "namedprocess_namegroup_memory_bytes",
        "Memory in use by this group, by type, in bytes.",
    );
    let mut fds = Family::gauge(
        "namedprocess_namegroup_open_filedesc",
        "Open file descriptors of this group.",
    );
    let mut ratio = Family::gauge(
        "namedprocess_namegroup_worst_fd_ratio",
        "The highest ratio of open to allowed file descriptors among the processes of this group.",
    );
    let mut oldest = Family::gauge(
        "namedprocess_namegroup_oldest_start_time_seconds",
        "Start time of the oldest process of this group, in seconds since the epoch (0 when none runs).",
    );
    let mut threads = Family::gauge(
        "namedprocess_namegroup_num_threads",
        "Number of threads in this group.",
    );
    let mut states = Family::gauge(
        "namedprocess_namegroup_states",
        "Number of processes of this group in each state (Running, Sleeping, Waiting, Zombie, Other).",
    );

    let empty = Gauges::default();
    for (name, totals) in &state.totals {
        let g = gauges.get(name).unwrap_or(&empty);
        let n = name.as_str();
        num_procs.push([("groupname", n)], g.procs as f64);
        cpu.push(
            [("groupname", n), ("mode", "user")],
            totals.user_ticks as f64 / tps,
        );
        cpu.push(
            [("groupname", n), ("mode", "system")],
            totals.system_ticks as f64 / tps,
        );
        read.push([("groupname", n)], totals.read_bytes as f64);
        write.push([("groupname", n)], totals.write_bytes as f64);
        major.push([("groupname", n)], totals.majflt as f64);
        minor.push([("groupname", n)], totals.minflt as f64);
        ctx.push(
            [("groupname", n), ("ctxswitchtype", "voluntary")],
            totals.voluntary_ctxt as f64,
        );
        ctx.push(
            [("groupname", n), ("ctxswitchtype", "nonvoluntary")],
            totals.nonvoluntary_ctxt as f64,
        );
        memory.push(
            [("groupname", n), ("memtype", "resident")],
            g.resident as f64,
        );
        memory.push(
            [("groupname", n), ("memtype", "virtual")],
            g.virtual_bytes as f64,
        );
        memory.push([("groupname", n), ("memtype", "swapped")], g.swapped as f64);
        fds.push([("groupname", n)], g.open_fds as f64);
        ratio.push([("groupname", n)], g.worst_fd_ratio);
        oldest.push([("groupname", n)], g.oldest_start.unwrap_or(0.0));
        threads.push([("groupname", n)], g.threads as f64);
        for (label, count) in [
            ("Running", g.running),
            ("Sleeping", g.sleeping),
            ("Waiting", g.waiting),
            ("Zombie", g.zombie),
            ("Other", g.other),
        ] {
            states.push([("groupname", n), ("state", label)], count as f64);
        }
    }
    let mut procread = Family::counter(
        "namedprocess_scrape_procread_errors",
        "Times a matched process's /proc/PID/status could not be read.",
    );
    procread.push_value(state.procread_errors as f64);
    let mut partial = Family::counter(
        "namedprocess_scrape_partial_errors",
        "Times a matched process's I/O counters or file descriptors could not be read.",
    );
    partial.push_value(state.partial_errors as f64);
    vec![
        num_procs, cpu, read, write, major, minor, ctx, memory, fds, ratio, oldest, threads,
        states, procread, partial,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            1024                 524288               files     \n\
Max processes             95696                95696                processes \n";

    /// Writes a fake /proc/PID.
    #[allow(clippy::too_many_arguments)]
    fn fake_proc(
        root: &Path,
        pid: u32,
        comm: &str,
        cmdline: &[&str],
        state: char,
        utime: u64,
        start: u64,
        fds: usize,
        uid: u32,
    ) {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(d.join("fd")).unwrap();
        std::fs::write(
            d.join("stat"),
            format!(
                "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 2 0 {utime} 50 0 0 20 0 3 0 {start} 10485760 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("status"),
            format!(
                "Name:\t{comm}\nState:\t{state} (x)\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nVmSwap:\t       8 kB\nThreads:\t3\nvoluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t2\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("io"),
            "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
        )
        .unwrap();
        std::fs::write(d.join("limits"), LIMITS).unwrap();
        let mut cl = cmdline.join("\0");
        cl.push('\0');
        std::fs::write(d.join("cmdline"), cl).unwrap();
        for i in 0..fds {
            std::fs::write(d.join("fd").join(i.to_string()), "").unwrap();
        }
    }

    fn groups(yaml: &str) -> Vec<ProcessGroupConfig> {
        let c: crate::config::Config = parse_yaml(Path::new("t.yml"), yaml).unwrap();
        c.validate(Path::new("t.yml")).unwrap();
        c.process_groups
    }

    fn collector(root: &Path, yaml: &str) -> ProcessGroups {
        let passwd = root.join("passwd");
        let gs = groups(yaml)
            .iter()
            .map(|g| Group::compile(g, &passwd).unwrap())
            .collect();
        ProcessGroups::new(
            Paths {
                procfs: root.into(),
                ..Paths::default()
            },
            gs,
        )
    }

    fn get(fams: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = fams.iter().find(|f| f.name == name)?;
        f.samples
            .iter()
            .find(|s| {
                labels.len() == s.labels.len()
                    && labels
                        .iter()
                        .zip(&s.labels)
                        .all(|((k, v), (k2, v2))| k == k2 && v == v2)
            })
            .map(|s| s.value)
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::write(r.join("stat"), "cpu  1 2 3 4\nbtime 1700000000\n").unwrap();
        std::fs::write(r.join("self"), "not a pid").unwrap();
        fake_proc(
            r,
            100,
            "nginx",
            &["/usr/sbin/nginx", "-g", "daemon off;"],
            'S',
            200,
            1000,
            5,
            0,
        );
        fake_proc(
            r,
            101,
            "nginx",
            &["nginx: worker process"],
            'R',
            100,
            2000,
            3,
            33,
        );
        fake_proc(
            r,
            200,
            "postgres",
            &["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/pg"],
            'D',
            10,
            500,
            1,
            105,
        );
        fake_proc(
            r,
            300,
            "my job (v2)",
            &["python3", "job.py", "--queue=mail"],
            'Z',
            0,
            3000,
            0,
            1000,
        );
        fake_proc(r, 400, "bash", &["-bash"], 'S', 7, 100, 2, 1000);
        std::fs::write(
            r.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\npostgres:x:105:110::/var/lib/postgresql:/bin/bash\n",
        )
        .unwrap();
        dir
    }

    const CONFIG: &str = r"
process_groups:
  - name: web
    comm: [nginx]
  - name: db
    exe: [/usr/lib/postgresql/15/bin/postgres]
    user: postgres
  - name: mailjobs
    cmdline: ['job\.py', '--queue=mail']
  - name: nothing
    comm: [absent]
  - name: '{{.Comm}}'
    user: 1000
";

    #[test]
    fn processes_are_grouped_and_summed() {
        let dir = fixture();
        let c = collector(dir.path(), CONFIG);
        let f = c.collect().unwrap();
        let tps = crate::collectors::util::ticks_per_second();
        let page = procfs::page_size() as f64;
        let web = [("groupname", "web")];
        assert_eq!(get(&f, "namedprocess_namegroup_num_procs", &web), Some(2.0));
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_cpu_seconds_total",
                &[("groupname", "web"), ("mode", "user")]
            ),
            Some(300.0 / tps)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_cpu_seconds_total",
                &[("groupname", "web"), ("mode", "system")]
            ),
            Some(100.0 / tps)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_memory_bytes",
                &[("groupname", "web"), ("memtype", "resident")]
            ),
            Some(512.0 * page)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_memory_bytes",
                &[("groupname", "web"), ("memtype", "virtual")]
            ),
            Some(2.0 * 10485760.0)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_memory_bytes",
                &[("groupname", "web"), ("memtype", "swapped")]
            ),
            Some(2.0 * 8192.0)
        );
        assert_eq!(
            get(&f, "namedprocess_namegroup_open_filedesc", &web),
            Some(8.0)
        );
        assert_eq!(
            get(&f, "namedprocess_namegroup_worst_fd_ratio", &web),
            Some(5.0 / 1024.0)
        );
        assert_eq!(
            get(&f, "namedprocess_namegroup_num_threads", &web),
            Some(6.0)
        );
        assert_eq!(
            get(&f, "namedprocess_namegroup_read_bytes_total", &web),
            Some(8192.0)
        );
        assert_eq!(
            get(&f, "namedprocess_namegroup_write_bytes_total", &web),
            Some(16384.0)
        );
        assert_eq!(
            get(&f, "namedprocess_namegroup_oldest_start_time_seconds", &web),
            Some(1700000000.0 + 1000.0 / tps)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_states",
                &[("groupname", "web"), ("state", "Running")]
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_states",
                &[("groupname", "web"), ("state", "Sleeping")]
            ),
            Some(1.0)
        );
        // exe as a full path plus user by name; state D is Waiting.
        let db = [("groupname", "db")];
        assert_eq!(get(&f, "namedprocess_namegroup_num_procs", &db), Some(1.0));
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_states",
                &[("groupname", "db"), ("state", "Waiting")]
            ),
            Some(1.0)
        );
        // cmdline regexes, all of which must match; a comm with spaces and parentheses.
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_num_procs",
                &[("groupname", "mailjobs")]
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_states",
                &[("groupname", "mailjobs"), ("state", "Zombie")]
            ),
            Some(1.0)
        );
        // A named group without processes is still reported.
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_num_procs",
                &[("groupname", "nothing")]
            ),
            Some(0.0)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_oldest_start_time_seconds",
                &[("groupname", "nothing")]
            ),
            Some(0.0)
        );
        // {{.Comm}} per command name; pid 300 went to mailjobs first.
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_num_procs",
                &[("groupname", "bash")]
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_num_procs",
                &[("groupname", "my job (v2)")]
            ),
            None
        );
        // Every family is valid exposition.
        let text = crate::exposition::encode(&f, crate::exposition::Format::Text);
        assert!(crate::exposition::parse_text(&text).is_ok());
    }

    #[test]
    fn counters_keep_the_usage_of_exited_processes() {
        let dir = fixture();
        let r = dir.path();
        let c = collector(r, CONFIG);
        let user = |f: &[Family]| {
            get(
                f,
                "namedprocess_namegroup_cpu_seconds_total",
                &[("groupname", "web"), ("mode", "user")],
            )
            .unwrap()
        };
        let tps = crate::collectors::util::ticks_per_second();
        let first = user(&c.collect().unwrap());
        assert_eq!(first, 300.0 / tps);
        // Worker 101 uses 50 more ticks, then exits; a new worker with a
        // reused pid (new start time) appears with 20 ticks.
        fake_proc(
            r,
            101,
            "nginx",
            &["nginx: worker process"],
            'R',
            150,
            2000,
            3,
            33,
        );
        assert_eq!(user(&c.collect().unwrap()), 350.0 / tps);
        std::fs::remove_dir_all(r.join("101")).unwrap();
        let f = c.collect().unwrap();
        assert_eq!(user(&f), 350.0 / tps);
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_num_procs",
                &[("groupname", "web")]
            ),
            Some(1.0)
        );
        fake_proc(
            r,
            101,
            "nginx",
            &["nginx: worker process"],
            'R',
            20,
            9000,
            3,
            33,
        );
        assert_eq!(user(&c.collect().unwrap()), 370.0 / tps);
        // Exec into another command: same pid and start time, new comm; the
        // usage before the exec stays with the old group.
        fake_proc(r, 101, "bash", &["bash"], 'S', 25, 9000, 1, 1000);
        let f = c.collect().unwrap();
        assert_eq!(user(&f), 370.0 / tps);
        assert_eq!(
            get(
                &f,
                "namedprocess_namegroup_cpu_seconds_total",
                &[("groupname", "bash"), ("mode", "user")]
            ),
            Some((7.0 + 5.0) / tps)
        );
        // A process that matched nothing becomes nginx: all its usage counts.
        fake_proc(r, 500, "cron", &["cron"], 'S', 40, 50, 1, 0);
        assert_eq!(user(&c.collect().unwrap()), 370.0 / tps);
        fake_proc(r, 500, "nginx", &["nginx"], 'S', 41, 50, 1, 0);
        assert_eq!(user(&c.collect().unwrap()), 411.0 / tps);
        // The tracker forgets processes that are gone.
        std::fs::remove_dir_all(r.join("101")).unwrap();
        std::fs::remove_dir_all(r.join("500")).unwrap();
        c.collect().unwrap();
        let tracked = c.state.lock().unwrap().procs.len();
        assert_eq!(tracked, 4);
    }

    #[test]
    fn unreadable_proc_is_an_error_and_vanished_processes_are_skipped() {
        let dir = fixture();
        let r = dir.path();
        // A pid directory without files: a process that exited mid-walk.
        std::fs::create_dir(r.join("999")).unwrap();
        // Garbage stat.
        std::fs::create_dir(r.join("998")).unwrap();
        std::fs::write(r.join("998/stat"), "998 (x").unwrap();
        let c = collector(r, CONFIG);
        assert!(c.collect().is_ok());
        let gone = collector(
            &r.join("missing"),
            "process_groups:\n  - name: x\n    comm: [x]\n",
        );
        assert!(matches!(gone.collect(), Err(CollectError::Io { .. })));
    }

    #[test]
    fn validation_names_the_key() {
        let v = |yaml: &str| -> String {
            let c: crate::config::Config = parse_yaml(Path::new("t.yml"), yaml).unwrap();
            c.validate(Path::new("t.yml")).unwrap_err().to_string()
        };
        assert_eq!(
            v("process_groups:\n  - name: a\n    cmdline: ['ok', '(']\n"),
            "t.yml: key `process_groups[0].cmdline[1]`: invalid regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group"
        );
        assert_eq!(
            v("process_groups:\n  - name: a\n    comm: [x]\n  - name: b\n"),
            "t.yml: key `process_groups[1]`: needs at least one matcher: comm, exe, cmdline or user"
        );
        assert!(
            v("process_groups:\n  - name: '{{.ExeBase}}'\n    comm: [x]\n")
                .contains("key `process_groups[0].name`")
        );
        assert!(
            v("process_groups:\n  - name: a\n    comm: [averyveryverylongname]\n")
                .contains("process_groups[0].comm[0]`")
        );
        assert!(
            v("process_groups:\n  - name: ''\n    comm: [x]\n")
                .contains("process_groups[0].name`: must not be empty")
        );
        let err = parse_yaml::<crate::config::Config>(
            Path::new("t.yml"),
            "process_groups:\n  - name: a\n    comms: [x]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `comms`"), "{err}");
        let g =
            groups("process_groups:\n  - name: a\n    user: 33\n  - name: b\n    user: www-data\n");
        assert_eq!(g[0].user.as_deref(), Some("33"));
        assert_eq!(g[1].user.as_deref(), Some("www-data"));
        let missing = Group::compile(&g[1], Path::new("/nonexistent/passwd"))
            .err()
            .unwrap();
        assert_eq!(missing.key, ".user");
    }

    #[test]
    fn configured_groups_switch_the_collector_on() {
        let cmd = crate::cli::add_collector_flags(clap::Command::new("t"));
        let on = |args: &[&str], yaml: &str| {
            let m = cmd.clone().try_get_matches_from(args).unwrap();
            let c: crate::config::Config = parse_yaml(Path::new("t.yml"), yaml).unwrap();
            crate::cli::collector_enabled(&m, &c, &SPEC)
        };
        let groups = "process_groups:\n  - name: a\n    comm: [a]\n";
        assert!(!on(&["t"], ""));
        assert!(on(&["t"], groups));
        assert!(on(&["t", "--collector.disable-defaults"], groups));
        assert!(!on(&["t", "--no-collector.processgroups"], groups));
        assert!(!on(
            &["t"],
            &format!("{groups}collectors:\n  processgroups: {{enabled: false}}\n")
        ));
        // Switched on without groups, building says what is missing.
        let m = cmd.clone().try_get_matches_from(["t"]).unwrap();
        let empty = crate::config::Config::default();
        let paths = Paths::default();
        let ctx = BuildContext {
            paths: &paths,
            matches: &m,
            config: &empty,
            state_dir: None,
        };
        let err = build(&ctx).err().unwrap().to_string();
        assert!(err.contains("no process groups configured"), "{err}");
    }

    #[test]
    fn exe_matches_argv0_like_process_exporter() {
        let g = Group::compile(
            &ProcessGroupConfig {
                name: "x".into(),
                exe: vec!["nginx".into(), "/opt/app/bin/server".into()],
                ..Default::default()
            },
            Path::new("/nonexistent"),
        )
        .unwrap();
        let id = |argv: &[&str]| Identity {
            comm: "whatever".into(),
            cmdline: argv.iter().map(|s| s.to_string()).collect(),
            euid: None,
        };
        assert!(g.matches(&id(&["/usr/sbin/nginx", "-g"])).is_some());
        assert!(g.matches(&id(&["nginx"])).is_some());
        assert!(g.matches(&id(&["/opt/app/bin/server"])).is_some());
        assert!(g.matches(&id(&["/usr/bin/server"])).is_none());
        assert!(g.matches(&id(&[])).is_none());
    }

    #[test]
    fn stat_parsing_handles_odd_command_names() {
        let s =
            parse_stat("42 (a) b (c)) S 1 42 42 0 -1 0 7 0 8 0 11 12 0 0 20 0 4 0 99 4096 -1 0\n")
                .unwrap();
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!((s.minflt, s.majflt, s.utime, s.stime), (7, 8, 11, 12));
        assert_eq!(
            (s.num_threads, s.starttime, s.vsize, s.rss_pages),
            (4, 99, 4096, 0)
        );
        assert!(parse_stat("42 (x) S 1 2").is_none());
        assert!(parse_stat("").is_none());
        assert_eq!(parse_max_open_files(LIMITS), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files unlimited unlimited files\n"),
            None
        );
    }

    #[test]
    fn live_sleep_children_are_counted() {
        let mut children: Vec<std::process::Child> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Give exec a moment so that comm is "sleep".
        std::thread::sleep(std::time::Duration::from_millis(200));
        let c = ProcessGroups::new(
            Paths::default(),
            groups("process_groups:\n  - name: sleepers\n    comm: [sleep]\n")
                .iter()
                .map(|g| Group::compile(g, Path::new("/etc/passwd")).unwrap())
                .collect(),
        );
        let result = c.collect();
        for child in &mut children {
            // Kill by the child's own PID and reap it.
            let _ = child.kill();
            let _ = child.wait();
        }
        let f = result.unwrap();
        let g = [("groupname", "sleepers")];
        assert!(get(&f, "namedprocess_namegroup_num_procs", &g).unwrap() >= 2.0);
        assert!(get(&f, "namedprocess_namegroup_num_threads", &g).unwrap() >= 2.0);
        assert!(
            get(
                &f,
                "namedprocess_namegroup_memory_bytes",
                &[("groupname", "sleepers"), ("memtype", "resident")]
            )
            .unwrap()
                > 0.0
        );
        assert!(
            get(
                &f,
                "namedprocess_namegroup_memory_bytes",
                &[("groupname", "sleepers"), ("memtype", "virtual")]
            )
            .unwrap()
                > 0.0
        );
        assert!(get(&f, "namedprocess_namegroup_open_filedesc", &g).unwrap() >= 2.0);
        let start = get(&f, "namedprocess_namegroup_oldest_start_time_seconds", &g).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(start > 1.0e9 && start <= now + 1.0, "{start}");
    }
}
