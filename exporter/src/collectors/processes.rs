//! `processes` (off by default, as in node_exporter): counts of processes
//! and threads by scheduler state from /proc/<pid>/stat and
//! /proc/<pid>/task/<tid>/stat, and the kernel's pid and thread limits.
//! Processes and threads that exit during the walk are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use procfs::ProcError;
use procfs::process::Process;

use super::util::read_number;
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "processes",
    help: "Process and thread counts by state, pid and thread limits (node_processes_*)",
    default_enabled: false,
    configured: super::not_configured,
    flags: Vec::new,
    build,
};

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(Processes {
        paths: ctx.paths.clone(),
    }))
}

struct Processes {
    paths: Paths,
}

/// What one walk over /proc found.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    pids: u64,
    threads: i64,
    states: BTreeMap<char, u64>,
    thread_states: BTreeMap<char, u64>,
}

/// Turns a procfs crate error into ours; `path` is used when the error
/// carries none. `Ok(())` means the process or thread is gone (it exited
/// during the walk), which the walk skips.
fn gone_or_error(e: ProcError, path: impl FnOnce() -> PathBuf) -> Result<(), CollectError> {
    match e {
        ProcError::NotFound(_) => Ok(()),
        ProcError::Io(source, p) => Err(CollectError::Io {
            path: p.unwrap_or_else(path),
            source,
        }),
        ProcError::PermissionDenied(p) => Err(CollectError::Io {
            path: p.unwrap_or_else(path),
            source: std::io::ErrorKind::PermissionDenied.into(),
        }),
        other => Err(CollectError::Parse {
            path: path(),
            message: other.to_string(),
        }),
    }
}

impl Processes {
    fn walk(&self) -> Result<Counts, CollectError> {
        let root = &self.paths.procfs;
        let procs =
            procfs::process::all_processes_with_root(root).map_err(|e| {
                match gone_or_error(e, || root.clone()) {
                    Err(e) => e,
                    Ok(()) => CollectError::NoData(format!("{} does not exist", root.display())),
                }
            })?;
        let mut c = Counts::default();
        for p in procs {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    gone_or_error(e, || root.clone())?;
                    continue;
                }
            };
            let stat_path = || self.paths.proc(format!("{}/stat", p.pid));
            let stat = match p.stat() {
                Ok(s) => s,
                Err(e) => {
                    gone_or_error(e, stat_path)?;
                    continue;
                }
            };
            c.pids += 1;
            *c.states.entry(stat.state).or_default() += 1;
            c.threads += stat.num_threads;
            self.count_threads(&p, stat.state, &mut c.thread_states)?;
        }
        Ok(c)
    }

    /// Adds the state of each thread of `p` (the main thread's is the
    /// process's own, as node_exporter counts it).
    fn count_threads(
        &self,
        p: &Process,
        state: char,
        into: &mut BTreeMap<char, u64>,
    ) -> Result<(), CollectError> {
        let task_dir = || self.paths.proc(format!("{}/task", p.pid));
        let tasks = match p.tasks() {
            Ok(t) => t,
            Err(e) => return gone_or_error(e, task_dir),
        };
        for t in tasks {
            let t = match t {
                Ok(t) => t,
                Err(e) => {
                    gone_or_error(e, task_dir)?;
                    continue;
                }
            };
            if t.tid == p.pid {
                *into.entry(state).or_default() += 1;
                continue;
            }
            match t.stat() {
                Ok(s) => *into.entry(s.state).or_default() += 1,
                Err(e) => gone_or_error(e, || task_dir().join(format!("{}/stat", t.tid)))?,
            }
        }
        Ok(())
    }
}

impl Collector for Processes {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let c = self.walk()?;
        let limit = |rel: &str| read_number(&self.paths.proc(Path::new("sys/kernel").join(rel)));
        let max_threads = limit("threads-max")?;
        let max_pids = limit("pid_max")?;

        let single = |name: &str, help: &str, v: f64| {
            let mut f = Family::gauge(name, help);
            f.push_value(v);
            f
        };
        let mut states =
            Family::gauge("node_processes_state", "Number of processes in each state.");
        for (s, n) in &c.states {
            states.push([("state", s.to_string())], *n as f64);
        }
        let mut thread_states = Family::gauge(
            "node_processes_threads_state",
            "Number of threads in each state.",
        );
        for (s, n) in &c.thread_states {
            thread_states.push([("thread_state", s.to_string())], *n as f64);
        }
        Ok(vec![
            single(
                "node_processes_threads",
                "Allocated threads in system",
                c.threads as f64,
            ),
            single(
                "node_processes_max_threads",
                "Limit of threads in the system",
                max_threads,
            ),
            states,
            thread_states,
            single("node_processes_pids", "Number of PIDs", c.pids as f64),
            single(
                "node_processes_max_processes",
                "Number of max PIDs limit",
                max_pids,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a /proc/<pid>/stat line (copied from this machine, with pid,
    /// name, state and thread count substituted).
    fn stat_line(pid: u32, comm: &str, state: char, threads: u32) -> String {
        format!(
            "{pid} ({comm}) {state} 0 0 0 0 -1 4194560 32846 6008324 0 923 40 190 23403 2669 10 -10 {threads} 0 24 \
             44613632 3415 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    /// A fake procfs: pid 1 (sleeping, 2 threads, one running), pid 40 (a
    /// kernel thread, idle), pid 77 (zombie), pid 90 (exited: no stat file),
    /// and the two limits.
    fn fixture() -> (tempfile::TempDir, Processes) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("1/stat", &stat_line(1, "init (main)", 'S', 2));
        write("1/task/1/stat", &stat_line(1, "init (main)", 'S', 2));
        write("1/task/5/stat", &stat_line(5, "worker", 'R', 2));
        write("40/stat", &stat_line(40, "kworker/0:1-events", 'I', 1));
        write(
            "40/task/40/stat",
            &stat_line(40, "kworker/0:1-events", 'I', 1),
        );
        write("77/stat", &stat_line(77, "defunct", 'Z', 1));
        write("77/task/77/stat", &stat_line(77, "defunct", 'Z', 1));
        std::fs::create_dir_all(root.join("90")).unwrap();
        write("sys/kernel/pid_max", "32768\n");
        write("sys/kernel/threads-max", "192730\n");
        write("loadavg", "0.52 0.58 0.59 1/467 12345\n");
        let c = Processes {
            paths: Paths {
                procfs: root.into(),
                ..Paths::default()
            },
        };
        (dir, c)
    }

    fn family<'a>(f: &'a [Family], name: &str) -> &'a Family {
        f.iter().find(|f| f.name == name).unwrap()
    }

    fn by_label(f: &Family) -> Vec<(String, f64)> {
        f.samples
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect()
    }

    #[test]
    fn counts_states_threads_and_limits() {
        let (_d, c) = fixture();
        let f = c.collect().unwrap();
        assert_eq!(family(&f, "node_processes_pids").samples[0].value, 3.0);
        assert_eq!(family(&f, "node_processes_threads").samples[0].value, 4.0);
        assert_eq!(
            family(&f, "node_processes_max_processes").samples[0].value,
            32768.0
        );
        assert_eq!(
            family(&f, "node_processes_max_threads").samples[0].value,
            192730.0
        );
        let states = family(&f, "node_processes_state");
        assert_eq!(states.samples[0].labels[0].0, "state");
        assert_eq!(
            by_label(states),
            vec![("I".into(), 1.0), ("S".into(), 1.0), ("Z".into(), 1.0)]
        );
        let threads = family(&f, "node_processes_threads_state");
        assert_eq!(threads.samples[0].labels[0].0, "thread_state");
        assert_eq!(
            by_label(threads),
            vec![
                ("I".into(), 1.0),
                ("R".into(), 1.0),
                ("S".into(), 1.0),
                ("Z".into(), 1.0)
            ]
        );
        assert!(
            f.iter()
                .all(|f| f.kind == crate::exposition::MetricType::Gauge)
        );
    }

    #[test]
    fn vanished_threads_and_task_dirs_are_skipped() {
        let (d, c) = fixture();
        // Thread 5 exits between listing and reading.
        std::fs::remove_file(d.path().join("1/task/5/stat")).unwrap();
        // Process 40 exits after its stat was read, before its tasks were listed.
        std::fs::remove_dir_all(d.path().join("40/task")).unwrap();
        let counts = c.walk().unwrap();
        assert_eq!(counts.pids, 3);
        assert_eq!(counts.thread_states.get(&'R'), None);
        assert_eq!(counts.thread_states.get(&'I'), None);
        assert_eq!(counts.thread_states.get(&'S'), Some(&1));
    }

    #[test]
    fn garbage_stat_and_missing_limits_are_errors() {
        let (d, c) = fixture();
        std::fs::write(d.path().join("77/stat"), "garbage").unwrap();
        let e = c.collect().unwrap_err();
        assert!(e.to_string().contains("77/stat"), "{e}");
        let (d, c) = fixture();
        std::fs::remove_file(d.path().join("sys/kernel/pid_max")).unwrap();
        assert!(matches!(c.collect(), Err(CollectError::Io { .. })));
        let gone = Processes {
            paths: Paths {
                procfs: d.path().join("nonexistent"),
                ..Paths::default()
            },
        };
        assert!(gone.collect().is_err());
    }

    #[test]
    fn real_proc_is_sane() {
        let f = Processes {
            paths: Paths::default(),
        }
        .collect()
        .unwrap();
        let v = |n: &str| family(&f, n).samples[0].value;
        let pids = v("node_processes_pids");
        assert!(pids >= 1.0);
        // This test runs in a multi-threaded process.
        assert!(v("node_processes_threads") >= pids);
        assert!(v("node_processes_max_processes") >= pids);
        assert!(v("node_processes_max_threads") >= v("node_processes_threads"));
        let states: f64 = family(&f, "node_processes_state")
            .samples
            .iter()
            .map(|s| s.value)
            .sum();
        assert_eq!(states, pids);
        // The test harness thread reading /proc is running.
        let threads = family(&f, "node_processes_threads_state");
        assert!(threads.samples.iter().any(|s| s.labels[0].1 == "R"));
    }
}
