//! `filesystem`: size, free space and inodes of every mounted file system
//! (statvfs on each mount point of /proc/1/mounts), under node_exporter
//! 1.5's names. A mount that does not answer (a hung NFS server) is given
//! up on after `--collector.filesystem.mount-timeout` and not asked again
//! until the stuck call returns.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::util::parse_error;
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "filesystem",
    help: "File system space and inodes of mounted file systems (node_filesystem_*)",
    default_enabled: true,
    configured: super::not_configured,
    flags,
    build,
};

/// node_exporter 1.5's default mount point exclusion.
const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";

/// node_exporter 1.5's default file system type exclusion (pseudo and
/// read-only image file systems).
const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|\
hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";

fn flags() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new("collector.filesystem.mount-points-exclude")
            .long("collector.filesystem.mount-points-exclude")
            .alias("collector.filesystem.ignored-mount-points")
            .value_name("REGEX")
            .default_value(DEFAULT_MOUNT_POINTS_EXCLUDE)
            .help("Regexp of mount points to exclude for filesystem collector"),
        clap::Arg::new("collector.filesystem.fs-types-exclude")
            .long("collector.filesystem.fs-types-exclude")
            .alias("collector.filesystem.ignored-fs-types")
            .value_name("REGEX")
            .default_value(DEFAULT_FS_TYPES_EXCLUDE)
            .help("Regexp of filesystem types to exclude for filesystem collector"),
        clap::Arg::new("collector.filesystem.mount-timeout")
            .long("collector.filesystem.mount-timeout")
            .value_name("DURATION")
            .default_value("5s")
            .help("How long to wait for a mount to respond before marking it as stale"),
    ]
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    let regex = |id: &str| -> anyhow::Result<Option<regex::Regex>> {
        ctx.flag(id)
            .filter(|p| !p.is_empty())
            .map(|p| {
                regex::Regex::new(&p)
                    .map_err(|e| anyhow::anyhow!("--{id}: invalid regular expression: {e}"))
            })
            .transpose()
    };
    let timeout = ctx
        .flag("collector.filesystem.mount-timeout")
        .unwrap_or_else(|| "5s".into());
    let timeout = humantime::parse_duration(&timeout)
        .map_err(|e| anyhow::anyhow!("--collector.filesystem.mount-timeout: {timeout:?}: {e}"))?;
    if timeout.is_zero() {
        anyhow::bail!("--collector.filesystem.mount-timeout must be more than zero");
    }
    Ok(Box::new(Filesystem {
        paths: ctx.paths.clone(),
        mount_points_exclude: regex("collector.filesystem.mount-points-exclude")?,
        fs_types_exclude: regex("collector.filesystem.fs-types-exclude")?,
        timeout,
        stat: Arc::new(statvfs),
        stuck: Arc::new(Mutex::new(HashSet::new())),
        idle: IdleWorkers::default(),
    }))
}

struct Filesystem {
    paths: Paths,
    mount_points_exclude: Option<regex::Regex>,
    fs_types_exclude: Option<regex::Regex>,
    timeout: Duration,
    /// The statvfs call (replaced in tests by one that hangs).
    stat: StatFn,
    /// Mount points (host view) whose statvfs call has not returned yet;
    /// the thread making the call removes its entry when it returns.
    stuck: Arc<Mutex<HashSet<String>>>,
    /// Threads waiting for statvfs calls.
    idle: IdleWorkers,
}

/// One line of a mounts file.
#[derive(Debug, Clone, PartialEq)]
struct Mount {
    device: String,
    /// As the host sees it (the root file system prefix stripped).
    mount_point: String,
    fs_type: String,
    read_only: bool,
}

/// What statvfs said about one file system, in bytes and inodes.
struct Usage {
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
}

/// How the collector asks a file system for its usage.
type StatFn = Arc<dyn Fn(&Path) -> Result<Usage, String> + Send + Sync>;

/// statvfs(3) on a path, in bytes and inodes.
fn statvfs(path: &Path) -> Result<Usage, String> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| e.to_string())?;
    // Block counts are in units of the fragment size (f_frsize).
    let frsize = st.fragment_size() as f64;
    Ok(Usage {
        size: st.blocks() as f64 * frsize,
        free: st.blocks_free() as f64 * frsize,
        avail: st.blocks_available() as f64 * frsize,
        files: st.files() as f64,
        files_free: st.files_free() as f64,
    })
}

/// Undoes the kernel's octal escapes of blanks, newlines and backslashes in
/// mounts files (`\040` for a space). Written here because procfs' mounts
/// parser does not decode `\040`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a mounts file (`/proc/1/mounts` format).
fn parse_mounts(path: &Path, text: &str, paths: &Paths) -> Result<Vec<Mount>, CollectError> {
    let mut mounts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 4 {
            return Err(parse_error(
                path,
                i + 1,
                format!("expected device, mount point, type and options, found {line:?}"),
            ));
        }
        let mount_point = unescape_octal(parts[1]);
        let host = paths.host_view(Path::new(&mount_point));
        mounts.push(Mount {
            device: parts[0].to_string(),
            mount_point: host.to_string_lossy().into_owned(),
            fs_type: parts[2].to_string(),
            read_only: parts[3].split(',').any(|o| o == "ro"),
        });
    }
    Ok(mounts)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One statvfs call handed to a worker thread.
struct Job {
    stat: StatFn,
    path: PathBuf,
    /// The mount point, as kept in the `stuck` set.
    key: String,
    reply: mpsc::Sender<Result<Usage, String>>,
}

/// Worker threads waiting for statvfs calls, kept from one scrape to the
/// next: starting a thread for every mount at every scrape cost more than
/// the statvfs calls themselves. A worker whose call overran the timeout is
/// not put back; its channel is dropped with the waiter, so the thread ends
/// once the stuck call returns.
type IdleWorkers = Arc<Mutex<Vec<mpsc::Sender<Job>>>>;

/// Starts a worker thread serving [`Job`]s until its channel is dropped.
fn start_worker(stuck: &Arc<Mutex<HashSet<String>>>) -> Result<mpsc::Sender<Job>, String> {
    let (tx, rx) = mpsc::channel::<Job>();
    let stuck = Arc::clone(stuck);
    std::thread::Builder::new()
        .name("statvfs".into())
        .spawn(move || {
            for job in rx {
                let result = (job.stat)(&job.path);
                // Unmark and hand over the result under one lock: the waiter
                // then either sees the result or has marked the mount
                // before we unmark.
                let mut set = lock(&stuck);
                if set.remove(&job.key) {
                    tracing::info!(mountpoint = %job.key, "mount point answered again; monitoring resumes");
                }
                let _ = job.reply.send(result);
                drop(set);
            }
        })
        .map_err(|e| format!("cannot start a thread for statvfs: {e}"))?;
    Ok(tx)
}

/// Calls `stat` on `path` in a worker thread and waits at most `timeout`.
/// `Ok(None)` means it did not answer in time (or is still stuck from an
/// earlier scrape); the mount point then stays in `stuck` until the call
/// returns, so that no second thread blocks on the same mount.
fn stat_with_timeout(
    stat: &StatFn,
    stuck: &Arc<Mutex<HashSet<String>>>,
    idle: &IdleWorkers,
    key: &str,
    path: PathBuf,
    timeout: Duration,
) -> Result<Option<Usage>, String> {
    if lock(stuck).contains(key) {
        return Ok(None);
    }
    let (tx, rx) = mpsc::channel();
    let mut job = Job {
        stat: Arc::clone(stat),
        path,
        key: key.to_string(),
        reply: tx,
    };
    // An idle worker if there is one (a worker whose thread is gone hands
    // the job back), else a new one.
    let worker = loop {
        let idle_worker = lock(idle).pop();
        let worker = match idle_worker {
            Some(w) => w,
            None => start_worker(stuck)?,
        };
        match worker.send(job) {
            Ok(()) => break worker,
            Err(mpsc::SendError(returned)) => job = returned,
        }
    };
    let result = match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err("the statvfs thread ended without an answer".into());
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let mut set = lock(stuck);
            match rx.try_recv() {
                Ok(r) => r,
                Err(_) => {
                    set.insert(key.to_string());
                    tracing::warn!(
                        mountpoint = key,
                        timeout = ?timeout,
                        "mount point did not answer statvfs in time; marked stale until it does"
                    );
                    // `worker` is dropped here: the stuck thread ends
                    // when its call returns.
                    return Ok(None);
                }
            }
        }
    };
    lock(idle).push(worker);
    result.map(Some)
}

impl Filesystem {
    fn read_mounts(&self) -> Result<Vec<Mount>, CollectError> {
        // /proc/1/mounts shows the mounts of the host's (or container's)
        // init; with hidepid it may be unreadable, then fall back to our own.
        let mut path = self.paths.proc("1/mounts");
        let text = match super::util::read_regular(&path) {
            Ok(t) => t,
            Err(first) => {
                tracing::debug!(error = %first, "reading {} failed, falling back to mounts", path.display());
                path = self.paths.proc("mounts");
                super::util::read_regular(&path).map_err(|source| CollectError::Io {
                    path: path.clone(),
                    source,
                })?
            }
        };
        parse_mounts(&path, &text, &self.paths)
    }
}

impl Collector for Filesystem {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let mounts = self.read_mounts()?;
        let help = [
            ("node_filesystem_size_bytes", "Filesystem size in bytes."),
            (
                "node_filesystem_free_bytes",
                "Filesystem free space in bytes.",
            ),
            (
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
            ),
            ("node_filesystem_files", "Filesystem total file nodes."),
            (
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
            ),
            ("node_filesystem_readonly", "Filesystem read-only status."),
        ];
        let mut fams: Vec<Family> = help.iter().map(|&(n, h)| Family::gauge(n, h)).collect();
        let mut device_error = Family::gauge(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
        );
        let mut seen = HashSet::new();
        for m in mounts {
            if self
                .mount_points_exclude
                .as_ref()
                .is_some_and(|r| r.is_match(&m.mount_point))
            {
                continue;
            }
            if self
                .fs_types_exclude
                .as_ref()
                .is_some_and(|r| r.is_match(&m.fs_type))
            {
                continue;
            }
            // A file system mounted twice at one place (or listed twice) is
            // reported once.
            if !seen.insert((m.device.clone(), m.mount_point.clone(), m.fs_type.clone())) {
                continue;
            }
            let labels = [
                ("device", m.device.as_str()),
                ("fstype", m.fs_type.as_str()),
                ("mountpoint", m.mount_point.as_str()),
            ];
            let target = self.paths.root(&m.mount_point);
            match stat_with_timeout(
                &self.stat,
                &self.stuck,
                &self.idle,
                &m.mount_point,
                target,
                self.timeout,
            ) {
                Ok(Some(u)) => {
                    device_error.push(labels, 0.0);
                    let ro = if m.read_only { 1.0 } else { 0.0 };
                    for (f, v) in
                        fams.iter_mut()
                            .zip([u.size, u.free, u.avail, u.files, u.files_free, ro])
                    {
                        f.push(labels, v);
                    }
                }
                Ok(None) => {
                    device_error.push(labels, 1.0);
                }
                Err(e) => {
                    tracing::debug!(mountpoint = %m.mount_point, error = %e, "statvfs failed");
                    device_error.push(labels, 1.0);
                }
            }
        }
        let mut out = vec![device_error];
        out.extend(fams);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/1/mounts of the development machine, plus a mount point with a
    /// space and a read-only one.
    const MOUNTS: &str = "proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12334460k,nr_inodes=3083615,mode=755 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24684084k 0 0
devpts /dev/pts devpts rw,relatime,mode=600,ptmxmode=000 0 0
/dev/vda / ext4 rw,relatime,discard,resv_strict,resuid=65534,resgid=65534 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
tmpfs /mnt/my\\040data tmpfs rw,relatime 0 0
tmpfs /mnt/ro tmpfs ro,relatime 0 0
tmpfs /mnt/ro tmpfs ro,relatime 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
tmpfs /run/credentials/x.service tmpfs ro 0 0
server:/export /mnt/gone nfs4 rw 0 0
";

    /// A temp dir as procfs and as rootfs, with a directory for each mount
    /// point that statvfs should find (not /mnt/gone).
    fn fixture() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let root = dir.path().join("root");
        std::fs::create_dir_all(proc.join("1")).unwrap();
        std::fs::write(proc.join("1/mounts"), MOUNTS).unwrap();
        for d in ["mnt/my data", "mnt/ro"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let paths = Paths {
            procfs: proc,
            rootfs: root,
            ..Paths::default()
        };
        (dir, paths)
    }

    fn build_with(paths: &Paths, args: &[&str]) -> anyhow::Result<Box<dyn Collector>> {
        crate::collectors::testutil::build_with(&SPEC, paths, args)
    }

    fn samples<'a>(fams: &'a [Family], name: &str) -> Vec<(&'a str, f64)> {
        crate::collectors::testutil::by_label(fams, name, "mountpoint")
    }

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape_octal(r"/mnt/my\040data"), "/mnt/my data");
        assert_eq!(unescape_octal(r"/a\011b\012c\134d"), "/a\tb\nc\\d");
        assert_eq!(unescape_octal(r"/plain\x"), r"/plain\x");
        assert_eq!(unescape_octal(r"/end\04"), r"/end\04");
    }

    #[test]
    fn reports_included_mounts_with_stats() {
        let (_dir, paths) = fixture();
        let c = build_with(&paths, &[]).unwrap();
        let f = c.collect().unwrap();
        // "/" is the temp root; "/mnt/gone" does not exist there, so it errors.
        assert_eq!(
            samples(&f, "node_filesystem_device_error"),
            [
                ("/", 0.0),
                ("/mnt/my data", 0.0),
                ("/mnt/ro", 0.0),
                ("/mnt/gone", 1.0)
            ]
        );
        let sizes = samples(&f, "node_filesystem_size_bytes");
        assert_eq!(sizes.len(), 3);
        assert!(sizes.iter().all(|(_, v)| *v > 0.0));
        assert_eq!(
            samples(&f, "node_filesystem_readonly"),
            [("/", 0.0), ("/mnt/my data", 0.0), ("/mnt/ro", 1.0)]
        );
        let size = f
            .iter()
            .find(|f| f.name == "node_filesystem_size_bytes")
            .unwrap();
        let l: Vec<&str> = size.samples[0]
            .labels
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(l, ["device", "fstype", "mountpoint"]);
        assert_eq!(size.samples[0].labels[0].1, "/dev/vda");
        assert_eq!(size.samples[0].labels[1].1, "ext4");
        // The numbers are those of the file system holding the temp dir.
        let want = nix::sys::statvfs::statvfs(&paths.rootfs).unwrap();
        let files = samples(&f, "node_filesystem_files");
        assert_eq!(files[0].1, want.files() as f64);
        let free = samples(&f, "node_filesystem_free_bytes")[0].1;
        let avail = samples(&f, "node_filesystem_avail_bytes")[0].1;
        assert!(avail <= free && free <= sizes[0].1);
    }

    #[test]
    fn exclusion_flags_are_unanchored_regexes() {
        let (_dir, paths) = fixture();
        let c = build_with(
            &paths,
            &[
                "--collector.filesystem.mount-points-exclude=^/mnt/",
                "--collector.filesystem.fs-types-exclude=cgroup|proc|sysfs|devtmpfs|devpts",
            ],
        )
        .unwrap();
        let names: Vec<String> = c.collect().unwrap()[0]
            .samples
            .iter()
            .map(|s| s.labels[2].1.clone())
            .collect();
        assert_eq!(
            names,
            [
                "/dev/shm",
                "/",
                "/sys/fs/cgroup",
                "/var/lib/docker/overlay2/abc/merged",
                "/run/credentials/x.service"
            ]
        );
        // node_exporter's deprecated flag names still work.
        let c = build_with(&paths, &["--collector.filesystem.ignored-fs-types=."]).unwrap();
        assert!(c.collect().unwrap()[0].samples.is_empty());
        assert!(build_with(&paths, &["--collector.filesystem.mount-points-exclude=("]).is_err());
        assert!(build_with(&paths, &["--collector.filesystem.mount-timeout=soon"]).is_err());
    }

    #[test]
    fn falls_back_to_proc_mounts_and_reports_bad_lines() {
        let (dir, paths) = fixture();
        std::fs::remove_file(dir.path().join("proc/1/mounts")).unwrap();
        std::fs::write(dir.path().join("proc/mounts"), "/dev/vda / ext4 rw 0 0\n").unwrap();
        let c = build_with(&paths, &[]).unwrap();
        assert_eq!(
            samples(&c.collect().unwrap(), "node_filesystem_device_error"),
            [("/", 0.0)]
        );
        std::fs::write(
            dir.path().join("proc/mounts"),
            "/dev/vda / ext4 rw 0 0\nbroken\n",
        )
        .unwrap();
        let e = c.collect().unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        std::fs::remove_file(dir.path().join("proc/mounts")).unwrap();
        assert!(matches!(c.collect(), Err(CollectError::Io { .. })));
    }

    #[test]
    fn mount_points_are_reported_as_the_host_sees_them() {
        // In a container: /proc/1/mounts lists the host's root under /host.
        let (dir, paths) = fixture();
        std::fs::write(
            dir.path().join("proc/1/mounts"),
            format!(
                "/dev/vda {} ext4 rw 0 0\n",
                paths.rootfs.join("mnt/ro").display()
            ),
        )
        .unwrap();
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        assert_eq!(
            samples(&f, "node_filesystem_device_error"),
            [("/mnt/ro", 0.0)]
        );
    }

    #[test]
    fn a_hung_mount_is_given_up_and_not_asked_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (_dir, paths) = fixture();
        let mut fs = Filesystem {
            paths,
            mount_points_exclude: Some(regex::Regex::new(DEFAULT_MOUNT_POINTS_EXCLUDE).unwrap()),
            fs_types_exclude: Some(regex::Regex::new(DEFAULT_FS_TYPES_EXCLUDE).unwrap()),
            timeout: Duration::from_millis(100),
            stat: Arc::new(statvfs),
            stuck: Arc::default(),
            idle: IdleWorkers::default(),
        };
        // "/mnt/ro" hangs for 600ms (a dead NFS server); the others answer.
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        fs.stat = Arc::new(move |p: &Path| {
            if p.ends_with("mnt/ro") {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(600));
            }
            statvfs(p)
        });
        let ro_error = |f: &[Family]| {
            samples(f, "node_filesystem_device_error")
                .into_iter()
                .find(|(mp, _)| *mp == "/mnt/ro")
                .map(|(_, v)| v)
        };
        let started = std::time::Instant::now();
        let f = fs.collect().unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "scrape waited for the hung mount"
        );
        assert_eq!(ro_error(&f), Some(1.0));
        assert_eq!(samples(&f, "node_filesystem_size_bytes").len(), 2);
        // Still stuck: reported as an error without a second call.
        let f = fs.collect().unwrap();
        assert_eq!(ro_error(&f), Some(1.0));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Once the call returns the mount is asked again (and hangs again).
        std::thread::sleep(Duration::from_millis(700));
        assert!(fs.stuck.lock().unwrap().is_empty());
        fs.collect().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn statvfs_threads_are_kept_between_scrapes() {
        let (_dir, paths) = fixture();
        let fs = Filesystem {
            paths,
            mount_points_exclude: Some(regex::Regex::new(DEFAULT_MOUNT_POINTS_EXCLUDE).unwrap()),
            fs_types_exclude: Some(regex::Regex::new(DEFAULT_FS_TYPES_EXCLUDE).unwrap()),
            timeout: Duration::from_secs(5),
            stat: Arc::new(statvfs),
            stuck: Arc::default(),
            idle: IdleWorkers::default(),
        };
        let threads = Arc::new(Mutex::new(HashSet::new()));
        let seen = Arc::clone(&threads);
        let mut fs = fs;
        fs.stat = Arc::new(move |p: &Path| {
            lock(&seen).insert(std::thread::current().id());
            statvfs(p)
        });
        for _ in 0..3 {
            let f = fs.collect().unwrap();
            assert_eq!(samples(&f, "node_filesystem_size_bytes").len(), 3);
        }
        // One scrape at a time: one thread served every call.
        assert_eq!(lock(&threads).len(), 1);
        assert_eq!(lock(&fs.idle).len(), 1);
    }

    #[test]
    fn reads_the_real_system() {
        let paths = Paths::default();
        if !paths.proc("mounts").exists() {
            return;
        }
        let f = build_with(&paths, &[]).unwrap().collect().unwrap();
        let errors = samples(&f, "node_filesystem_device_error");
        assert!(
            errors.iter().any(|(mp, v)| *mp == "/" && *v == 0.0),
            "{errors:?}"
        );
        let root = nix::sys::statvfs::statvfs("/").unwrap();
        let size = samples(&f, "node_filesystem_size_bytes");
        let (_, v) = size.iter().find(|(mp, _)| *mp == "/").unwrap();
        assert_eq!(*v, root.blocks() as f64 * root.fragment_size() as f64);
    }
}
