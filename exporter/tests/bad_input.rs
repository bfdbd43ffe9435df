//! Damaged /proc, /sys and root trees against the real imd-exporter binary.
//!
//! The exporter runs with `--path.procfs`, `--path.sysfs` and `--path.rootfs`
//! pointing at a copy of a few real files in a temp dir. Each case puts one
//! kind of damage in place of one file (a FIFO, a directory, a dangling link,
//! a link to an endless device, truncated, garbage, binary or empty content,
//! a single enormous line), scrapes, and checks that the answer is 200 within
//! seconds, that exactly the collectors reading that file report
//! `node_scrape_collector_success 0`, that every other collector still reports
//! success and its metrics, and that the error logged names the file. Then the
//! file is put back and the next case runs, in the same process: a case that
//! hung or broke the process would fail all the later ones too.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Family, free_port, http_get, parse_text, start_imd, tempdir};

/// Real files copied into the fixture (relative to /proc).
const PROC_FILES: &[&str] = &[
    "loadavg",
    "meminfo",
    "stat",
    "diskstats",
    "net/dev",
    "pressure/cpu",
    "pressure/memory",
    "pressure/io",
    "1/mounts",
];

/// Interface attributes copied for `lo` (relative to /sys/class/net/lo).
const LO_ATTRIBUTES: &[&str] = &["operstate", "address", "mtu", "ifindex", "type", "flags"];

/// A metric each collector reports whenever it works, to prove the others'
/// metrics are still there.
const WITNESS: &[(&str, &str)] = &[
    ("cpu", "node_cpu_seconds_total"),
    ("diskstats", "node_disk_io_now"),
    ("filesystem", "node_filesystem_device_error"),
    ("loadavg", "node_load1"),
    ("meminfo", "node_memory_MemTotal_bytes"),
    ("netclass", "node_network_mtu_bytes"),
    ("netdev", "node_network_receive_bytes_total"),
    ("os", "node_os_info"),
    ("pressure", "node_pressure_cpu_waiting_seconds_total"),
    ("stat", "node_boot_time_seconds"),
    ("textfile", "fixture_ok"),
    ("uname", "node_uname_info"),
];

/// One kind of damage to a file.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// A named pipe nobody writes to: a blocking open never returns.
    Fifo,
    /// A directory in place of the file.
    Directory,
    /// A symbolic link to nothing.
    DanglingLink,
    /// A link to /dev/zero: reading never ends.
    Endless,
    /// The real content cut inside a line a third of the way in.
    Truncated,
    /// Text that is not the format.
    Garbage,
    /// Bytes that are not UTF-8, NULs included.
    Binary,
    /// Nothing at all.
    Empty,
    /// One 16 MiB line without a newline.
    HugeLine,
}

const ALL_DAMAGE: &[Damage] = &[
    Damage::Fifo,
    Damage::Directory,
    Damage::DanglingLink,
    Damage::Endless,
    Damage::Truncated,
    Damage::Garbage,
    Damage::Binary,
    Damage::Empty,
    Damage::HugeLine,
];

/// A file to damage: where it is (relative to the fixture root), which
/// collectors read it, and the damages its readers may legitimately take as
/// "nothing to report" rather than an error (`"Damage"` for all of them,
/// `"Damage/collector"` for one).
struct Target {
    rel: &'static str,
    readers: &'static [&'static str],
    tolerated: &'static [&'static str],
    /// Damages read as "this system has no such data": the collector fails
    /// but logs that at debug level only, as node_exporter does.
    no_data: &'static [&'static str],
    /// Another file the error may name instead (a fallback's).
    or_logged: Option<&'static str>,
}

const TARGETS: &[Target] = &[
    Target {
        rel: "proc/loadavg",
        readers: &["loadavg"],
        tolerated: &[],
        no_data: &[],
        or_logged: None,
    },
    Target {
        rel: "proc/meminfo",
        readers: &["meminfo"],
        tolerated: &[],
        no_data: &[],
        or_logged: None,
    },
    Target {
        rel: "proc/stat",
        readers: &["cpu", "stat"],
        // The cut leaves the cpu lines whole, which is all the cpu collector
        // reads; the stat collector misses its later lines.
        tolerated: &["Truncated/cpu"],
        no_data: &[],
        or_logged: None,
    },
    Target {
        rel: "proc/diskstats",
        readers: &["diskstats"],
        // No disks is a valid /proc/diskstats.
        tolerated: &["Empty"],
        no_data: &[],
        or_logged: None,
    },
    Target {
        rel: "proc/net/dev",
        readers: &["netdev"],
        // Read as no interfaces, as node_exporter does.
        tolerated: &["Empty"],
        no_data: &[],
        or_logged: None,
    },
    Target {
        rel: "proc/pressure/cpu",
        readers: &["pressure"],
        tolerated: &[],
        // A missing PSI file means a kernel without PSI: no data, logged
        // at debug level (node_exporter does the same).
        no_data: &["DanglingLink"],
        or_logged: None,
    },
    Target {
        rel: "proc/1/mounts",
        readers: &["filesystem"],
        // No mounts: nothing to report.
        tolerated: &["Empty"],
        no_data: &[],
        // When /proc/1/mounts cannot be read the collector falls back to
        // /proc/mounts, which the fixture does not have: the error then
        // names that file (the first failure is logged at debug level).
        or_logged: Some("proc/mounts"),
    },
    Target {
        rel: "sys/class/net/lo/operstate",
        readers: &["netclass"],
        // A missing attribute is one the kernel does not offer (node_exporter
        // skips it too); any UTF-8 content is reported as the operstate label.
        tolerated: &["DanglingLink", "Truncated", "Garbage", "Empty", "HugeLine"],
        no_data: &[],
        or_logged: None,
    },
    Target {
        rel: "root/etc/os-release",
        readers: &["os"],
        // An empty os-release is valid: all labels empty.
        tolerated: &["Empty"],
        // Absolute links are followed inside the root file system, where
        // these lead nowhere: the next candidate (usr/lib/os-release) is
        // tried, and none is "no data".
        no_data: &["DanglingLink", "Endless"],
        or_logged: None,
    },
];

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    originals: BTreeMap<&'static str, Vec<u8>>,
}

impl Fixture {
    fn build() -> Fixture {
        let dir = tempdir();
        let root = dir.path().to_path_buf();
        let mut originals = BTreeMap::new();
        let mut copy = |rel: &'static str, from: PathBuf| {
            let bytes = std::fs::read(&from)
                .unwrap_or_else(|e| panic!("reading {} for the fixture: {e}", from.display()));
            originals.insert(rel, bytes);
        };
        for f in PROC_FILES {
            let rel: &'static str = Box::leak(format!("proc/{f}").into_boxed_str());
            copy(rel, Path::new("/proc").join(f));
        }
        for a in LO_ATTRIBUTES {
            let rel: &'static str = Box::leak(format!("sys/class/net/lo/{a}").into_boxed_str());
            copy(rel, Path::new("/sys/class/net/lo").join(a));
        }
        // Fixed content: the host's os-release may be a link to elsewhere.
        originals.insert(
            "root/etc/os-release",
            b"NAME=\"Fixture Linux\"\nID=fixture\nVERSION_ID=\"1.0\"\nPRETTY_NAME=\"Fixture Linux 1.0\"\n"
                .to_vec(),
        );
        originals.insert(
            "textfile/ok.prom",
            b"# HELP fixture_ok A textfile metric.\n# TYPE fixture_ok gauge\nfixture_ok 1\n"
                .to_vec(),
        );
        let f = Fixture {
            _dir: dir,
            root,
            originals,
        };
        for rel in f.originals.keys() {
            f.restore(rel);
        }
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Puts the original file back, whatever stands in its place.
    fn restore(&self, rel: &str) {
        let p = self.path(rel);
        remove_any(&p);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("creating fixture dirs");
        std::fs::write(&p, &self.originals[rel]).expect("writing fixture file");
    }

    fn damage(&self, rel: &str, damage: Damage) {
        let p = self.path(rel);
        let original = &self.originals[rel];
        remove_any(&p);
        match damage {
            Damage::Fifo => {
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644))
                    .expect("mkfifo")
            }
            Damage::Directory => {
                std::fs::create_dir(&p).expect("mkdir");
                std::fs::write(p.join("inside"), "1\n").expect("writing into the dir");
            }
            Damage::DanglingLink => {
                std::os::unix::fs::symlink(self.root.join("nowhere/at/all"), &p).expect("symlink")
            }
            Damage::Endless => std::os::unix::fs::symlink("/dev/zero", &p).expect("symlink"),
            Damage::Truncated => {
                // Two bytes into the first word of the line a third of the
                // way in: the last line is a stump.
                let third = original.len() / 3;
                let cut = match original[..third].iter().rposition(|&b| b == b'\n') {
                    Some(nl) => {
                        let word = original[nl + 1..]
                            .iter()
                            .position(|b| !b.is_ascii_whitespace())
                            .map_or(nl + 1, |w| nl + 1 + w);
                        (word + 2).min(original.len() - 1)
                    }
                    None => third,
                };
                std::fs::write(&p, &original[..cut]).expect("write")
            }
            Damage::Garbage => std::fs::write(
                &p,
                "this is not\nthe format { at all } = = =\n-- -1e999 NaN ::\n",
            )
            .expect("write"),
            Damage::Binary => {
                let bytes: Vec<u8> = (0..4096u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .chain([0xff, 0xfe, 0x00, 0xc3, 0x28])
                    .collect();
                std::fs::write(&p, bytes).expect("write")
            }
            Damage::Empty => std::fs::write(&p, b"").expect("write"),
            Damage::HugeLine => std::fs::write(&p, vec![b'7'; 16 << 20]).expect("write"),
        }
    }
}

fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).expect("removing dir"),
        Ok(_) => std::fs::remove_file(p).expect("removing file"),
        Err(_) => {}
    }
}

/// `node_scrape_collector_success` by collector.
fn successes(fams: &BTreeMap<String, Family>) -> BTreeMap<String, f64> {
    fams.get("node_scrape_collector_success")
        .map(|f| {
            f.samples
                .iter()
                .filter_map(|s| Some((s.label("collector")?.to_string(), s.value)))
                .collect()
        })
        .unwrap_or_default()
}

/// Scrapes once; returns the time taken and the parsed families.
fn scrape(port: u16, what: &str) -> (Duration, BTreeMap<String, Family>) {
    let start = Instant::now();
    let r = http_get(port, "/metrics", &[])
        .unwrap_or_else(|e| panic!("{what}: scrape failed (a hang?): {e}"));
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    let fams = parse_text(&r.text()).unwrap_or_else(|e| panic!("{what}: bad exposition: {e}"));
    (took, fams)
}

fn log_len(path: &Path) -> usize {
    std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

fn log_since(path: &Path, from: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned()
}

#[test]
fn damaged_proc_sys_and_root_files_fail_only_their_collectors() {
    let fx = Fixture::build();
    let port = free_port();
    let collectors = [
        "cpu",
        "diskstats",
        "filesystem",
        "loadavg",
        "meminfo",
        "netclass",
        "netdev",
        "os",
        "pressure",
        "stat",
        "textfile",
        "uname",
    ];
    let mut args = vec!["--collector.disable-defaults".to_string()];
    args.extend(collectors.iter().map(|c| format!("--collector.{c}")));
    args.extend([
        format!("--path.procfs={}", fx.path("proc").display()),
        format!("--path.sysfs={}", fx.path("sys").display()),
        format!("--path.rootfs={}", fx.path("root").display()),
        format!(
            "--collector.textfile.directory={}",
            fx.path("textfile").display()
        ),
    ]);
    let mut imd = start_imd(&fx.root, port, &args);
    let stderr_path = fx.root.join("imd-exporter.stderr");

    // Undamaged, every collector works.
    let (_, fams) = scrape(port, "baseline");
    let ok = successes(&fams);
    assert_eq!(ok.len(), collectors.len(), "{ok:?}");
    assert!(ok.values().all(|&v| v == 1.0), "baseline: {ok:?}");
    for (_, metric) in WITNESS {
        assert!(fams.contains_key(*metric), "baseline lacks {metric}");
    }

    let mut cases = 0;
    let mut slowest = (Duration::ZERO, String::new());
    for target in TARGETS {
        for &damage in ALL_DAMAGE {
            let what = format!("{} as {damage:?}", target.rel);
            fx.damage(target.rel, damage);
            let before = log_len(&stderr_path);
            let (took, fams) = scrape(port, &what);
            if took > slowest.0 {
                slowest = (took, what.clone());
            }
            assert!(
                took < Duration::from_secs(5),
                "{what}: the scrape took {took:?}"
            );
            let ok = successes(&fams);
            assert_eq!(ok.len(), collectors.len(), "{what}: {ok:?}");
            let tolerated = |collector: &str| {
                target
                    .tolerated
                    .iter()
                    .any(|t| *t == format!("{damage:?}") || *t == format!("{damage:?}/{collector}"))
            };
            let mut failed = 0;
            for (collector, &v) in &ok {
                let reads_it = target.readers.contains(&collector.as_str());
                if reads_it && !tolerated(collector) {
                    failed += 1;
                    assert_eq!(v, 0.0, "{what}: {collector} should have failed");
                } else {
                    assert_eq!(v, 1.0, "{what}: {collector} should have worked");
                }
            }
            // The others' metrics are all there.
            for (collector, metric) in WITNESS {
                if !target.readers.contains(collector) {
                    assert!(fams.contains_key(*metric), "{what}: {metric} is missing");
                }
            }
            // The log quotes bad input, but not 16 MiB of it.
            std::thread::sleep(Duration::from_millis(50));
            let logged = log_len(&stderr_path) - before;
            assert!(
                logged < 16 << 10,
                "{what}: {logged} bytes logged for one scrape"
            );
            if failed > 0 && !target.no_data.contains(&format!("{damage:?}").as_str()) {
                // The log names the file (filesystem's fallback names both).
                let log = log_since(&stderr_path, before);
                let file = fx.path(target.rel).display().to_string();
                let named = log.contains(&file)
                    || target
                        .or_logged
                        .is_some_and(|f| log.contains(&fx.path(f).display().to_string()));
                assert!(
                    named && log.contains("level=error"),
                    "{what}: the log does not name {file}:\n{log}"
                );
            }
            assert!(imd.exited().is_none(), "{what}: the exporter exited");
            fx.restore(target.rel);
            cases += 1;
        }
    }

    // Put back, everything works again.
    let (_, fams) = scrape(port, "after the damage");
    let ok = successes(&fams);
    assert!(ok.values().all(|&v| v == 1.0), "after: {ok:?}");
    eprintln!(
        "{cases} damaged files, slowest scrape {:?} ({})",
        slowest.0, slowest.1
    );
}

#[test]
fn a_textfile_fifo_and_thousands_of_files_do_not_block_the_scrape() {
    let dir = tempdir();
    let text = dir.path().join("textfile");
    std::fs::create_dir(&text).unwrap();
    for i in 0..3000 {
        std::fs::write(
            text.join(format!("f{i:04}.prom")),
            format!("# TYPE many_files gauge\nmany_files{{file=\"{i}\"}} {i}\n"),
        )
        .unwrap();
    }
    let fifo = text.join("pipe.prom");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let port = free_port();
    let args = vec![
        "--collector.disable-defaults".to_string(),
        "--collector.textfile".to_string(),
        "--collector.loadavg".to_string(),
        format!("--collector.textfile.directory={}", text.display()),
    ];
    let _imd = start_imd(dir.path(), port, &args);
    let (took, fams) = scrape(port, "3000 textfiles and a FIFO");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(fams["many_files"].samples.len(), 3000);
    assert!(fams.contains_key("node_load1"));
    // The FIFO is reported as a broken file, the rest is served.
    let errors = &fams["node_textfile_scrape_error"].samples;
    assert_eq!(errors[0].value, 1.0, "the FIFO is a textfile error");
    let log = std::fs::read_to_string(dir.path().join("imd-exporter.stderr")).unwrap();
    assert!(
        log.contains(&fifo.display().to_string()),
        "the log names the FIFO:\n{log}"
    );
}

#[test]
fn passwords_given_by_clients_are_never_logged() {
    use base64::Engine;
    const RIGHT: &str = "right-Pw-4kQz8";
    const WRONG: &str = "wrong-Pw-Xy7Lm";
    let dir = tempdir();
    let d = dir.path();
    let hash = bcrypt::hash(RIGHT, 4).expect("bcrypt hash");
    let web = d.join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
    let port = free_port();
    let args = vec![
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--storage.path={}", d.join("state").display()),
        format!("--web.config.file={}", web.display()),
        "--log.level=debug".to_string(),
        "--collector.disable-defaults".to_string(),
        "--collector.loadavg".to_string(),
    ];
    let mut imd = common::Proc::spawn("imd-exporter", &common::imd_exporter_bin(), &args, d);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let basic = |user: &str, pw: &str| format!("Basic {}", b64(&format!("{user}:{pw}")));
    let right = basic("alice", RIGHT);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(imd.exited().is_none(), "exited:\n{}", imd.stderr());
        if http_get(port, "/metrics", &[("Authorization", &right)]).is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", imd.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let attempts = [
        (basic("alice", WRONG), 401),
        (basic("mallory", WRONG), 401),
        (basic(WRONG, RIGHT), 401),
        (format!("Basic {}", b64(WRONG)), 401),
        (format!("Bearer {WRONG}"), 401),
        (format!("Basic {WRONG}"), 401),
        (right.clone(), 200),
    ];
    for (header, want) in &attempts {
        let r = http_get(port, "/metrics", &[("Authorization", header)]).unwrap();
        assert_eq!(r.status, *want, "{header}");
        assert!(!r.text().contains(WRONG) && !r.text().contains(RIGHT));
    }
    std::thread::sleep(Duration::from_millis(200));
    imd.stop();
    let log = std::fs::read_to_string(d.join("imd-exporter.stderr")).unwrap();
    assert!(
        log.contains("starting imd-exporter"),
        "the log was kept:\n{log}"
    );
    for secret in [
        RIGHT.to_string(),
        WRONG.to_string(),
        b64(&format!("alice:{WRONG}")),
        b64(&format!("alice:{RIGHT}")),
        hash.clone(),
    ] {
        assert!(
            !log.contains(&secret),
            "the log contains {secret:?}:\n{log}"
        );
    }
}
