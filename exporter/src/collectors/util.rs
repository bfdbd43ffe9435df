//! Small helpers the collectors share for reading /proc and /sys.

use std::path::Path;

use super::CollectError;

/// Opens a file for reading only if it is a regular file. The open is
/// non-blocking, so a FIFO put where a /proc or /sys file should be fails at
/// once instead of blocking the scrape until a writer comes, and a device
/// (such as a link to /dev/zero, which never ends) is refused too. /proc and
/// /sys files are regular files; non-blocking mode changes nothing for them.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    open_regular_with_len(path).map(|(file, _)| file)
}

/// [`open_regular`], also giving the length the file reports (0 for /proc
/// and /sys files, whose size is only known by reading them).
fn open_regular_with_len(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    regular_len(file)
}

/// Refuses anything but a regular file; gives the file back with the
/// length it reports.
fn regular_len(file: std::fs::File) -> std::io::Result<(std::fs::File, u64)> {
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} (refused: only regular files are read)"),
        ));
    }
    Ok((file, meta.len()))
}

/// Largest read buffer kept for the next file; a buffer grown past it (by a
/// big textfile) is given back once that file is read.
const KEPT_BUFFER: usize = 256 << 10;

thread_local! {
    /// Each thread's buffer for [`read_all`], reused from file to file.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `std::fs::read_to_string` through [`open_regular`]: never blocks on a
/// FIFO, never reads a device.
///
/// Reads through a plain `Read` wrapper rather than `File::read_to_string`:
/// the latter asks the kernel for the size and the position again (fstat
/// and lseek) before reading, two system calls per file on top of the
/// fstat `open_regular` already made, for files whose size is 0 anyway.
/// A scrape reads a few hundred such files.
pub fn read_regular(path: &Path) -> std::io::Result<String> {
    let (file, len) = open_regular_with_len(path)?;
    read_all(&file, len)
}

/// A directory whose files are read by name relative to it: the path to
/// the directory is walked once (in /sys, through a symbolic link or two)
/// instead of once per file, which made up most of the kernel's work when
/// a collector reads twenty attributes of each network interface. The
/// files are still opened and read afresh at every call.
pub struct Dir {
    fd: std::os::fd::OwnedFd,
}

impl Dir {
    /// Opens a directory for [`Dir::read_regular`] (an `O_PATH` handle:
    /// nothing is read from the directory itself).
    pub fn open(path: &Path) -> std::io::Result<Dir> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// [`read_regular`] of a file named relative to this directory.
    pub fn read_regular(&self, name: &str) -> std::io::Result<String> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let (file, len) = regular_len(std::fs::File::from(fd))?;
        read_all(&file, len)
    }
}

/// Reads an opened file to its end as UTF-8 text; `len` is the length it
/// reported (0 when unknown).
fn read_all(file: &std::fs::File, len: u64) -> std::io::Result<String> {
    use std::io::Read;
    /// `Read` without `File`'s specialised `read_to_end`.
    struct Plain<'a>(&'a std::fs::File);
    impl Read for Plain<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            (&mut &*self.0).read(buf)
        }
    }
    // Read into a buffer kept from file to file, then copy out exactly the
    // text: a fresh page-sized buffer per file made glibc's malloc sort its
    // free lists (malloc_consolidate) a few hundred times per scrape.
    READ_BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.clear();
        // Room for a file that tells its length, plus one byte so that the
        // read seeing the end needs no more; a huge one grows as it is read.
        // /proc and /sys files tell none: a page holds nearly all of them.
        let wanted = usize::try_from(len).map_or(1 << 20, |n| n.min(1 << 20)) + 1;
        buf.reserve(wanted.max(4096));
        let result = Plain(file).read_to_end(&mut buf).and_then(|_| {
            std::str::from_utf8(&buf).map(str::to_owned).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "stream did not contain valid UTF-8",
                )
            })
        });
        if buf.capacity() > KEPT_BUFFER {
            *buf = Vec::new();
        }
        result
    })
}

/// Reads a whole file as text, with the path in the error.
pub fn read_string(path: &Path) -> Result<String, CollectError> {
    read_regular(path).map_err(|source| CollectError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file holding one number (as many /sys attributes do).
pub fn read_number(path: &Path) -> Result<f64, CollectError> {
    let s = read_string(path)?;
    s.trim().parse().map_err(|_| CollectError::Parse {
        path: path.to_path_buf(),
        message: format!("expected a number, found {:?}", s.trim()),
    })
}

/// A parse error at a 1-based line of a file.
pub fn parse_error(path: &Path, line: usize, message: impl std::fmt::Display) -> CollectError {
    CollectError::Parse {
        path: path.to_path_buf(),
        message: format!("line {line}: {message}"),
    }
}

/// The kernel's clock ticks per second (`USER_HZ`), used to turn /proc's
/// jiffies into seconds.
pub fn ticks_per_second() -> f64 {
    procfs::ticks_per_second() as f64
}

/// Compiles an optional include and exclude pattern pair into a device
/// filter. [`DeviceFilter::new`] anchors the patterns (whole-name match);
/// [`DeviceFilter::unanchored`] and [`DeviceFilter::from_flags`] use them as
/// given, as node_exporter's diskstats and netdev flags do.
pub struct DeviceFilter {
    include: Option<regex::Regex>,
    exclude: Option<regex::Regex>,
}

impl DeviceFilter {
    /// Builds a filter whose patterns must match the whole name; `flag`
    /// names the offending flag in errors.
    pub fn new(
        include: Option<&str>,
        exclude: Option<&str>,
        flag: &str,
    ) -> anyhow::Result<DeviceFilter> {
        Self::compile(include, exclude, flag, true)
    }

    /// Builds a filter whose patterns match anywhere in the name unless they
    /// anchor themselves (`^...$`), as Go's `regexp.MatchString` in
    /// node_exporter; `flag` names the offending flag in errors.
    pub fn unanchored(
        include: Option<&str>,
        exclude: Option<&str>,
        flag: &str,
    ) -> anyhow::Result<DeviceFilter> {
        Self::compile(include, exclude, flag, false)
    }

    /// Builds an unanchored filter from a collector's `--PREFIX-include` and
    /// `--PREFIX-exclude` flags (`prefix` like `collector.netdev.device`).
    /// The two are mutually exclusive as in node_exporter, except that an
    /// exclude pattern that is only a default gives way to an include given
    /// on the command line (node_exporter 1.5 refuses to start there).
    pub fn from_flags(ctx: &super::BuildContext, prefix: &str) -> anyhow::Result<DeviceFilter> {
        let include_id = format!("{prefix}-include");
        let exclude_id = format!("{prefix}-exclude");
        let include = ctx.flag(&include_id).filter(|p| !p.is_empty());
        let mut exclude = ctx.flag(&exclude_id).filter(|p| !p.is_empty());
        if include.is_some() && exclude.is_some() {
            let defaulted = matches!(
                ctx.matches.value_source(&exclude_id),
                None | Some(clap::parser::ValueSource::DefaultValue)
            );
            if !defaulted {
                anyhow::bail!("--{include_id} and --{exclude_id} are mutually exclusive");
            }
            exclude = None;
        }
        Self::unanchored(include.as_deref(), exclude.as_deref(), prefix)
    }

    fn compile(
        include: Option<&str>,
        exclude: Option<&str>,
        flag: &str,
        anchor: bool,
    ) -> anyhow::Result<DeviceFilter> {
        let compile = |p: Option<&str>, which: &str| -> anyhow::Result<Option<regex::Regex>> {
            p.filter(|p| !p.is_empty())
                .map(|p| {
                    let pattern = if anchor {
                        format!("^(?:{p})$")
                    } else {
                        p.to_string()
                    };
                    regex::Regex::new(&pattern).map_err(|e| {
                        anyhow::anyhow!("--{flag}-{which}: invalid regular expression: {e}")
                    })
                })
                .transpose()
        };
        Ok(DeviceFilter {
            include: compile(include, "include")?,
            exclude: compile(exclude, "exclude")?,
        })
    }

    /// Whether a device (or mount point, or file system type) is reported.
    pub fn allows(&self, name: &str) -> bool {
        if let Some(inc) = &self.include {
            return inc.is_match(name);
        }
        if let Some(exc) = &self.exclude {
            return !exc.is_match(name);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_quoted_line_is_clipped_in_the_error() {
        let line = format!("é{}", "7".repeat(1 << 20));
        let e = parse_error(Path::new("/proc/x"), 3, format!("bad {line:?}")).to_string();
        assert!(
            e.starts_with("parsing /proc/x: line 3: bad \"é777"),
            "{}",
            &e[..40]
        );
        assert!(e.len() < 1200, "{} bytes", e.len());
        assert!(e.ends_with("bytes in all)"), "{}", &e[e.len() - 60..]);
        let short = parse_error(Path::new("/proc/x"), 1, "short").to_string();
        assert_eq!(short, "parsing /proc/x: line 1: short");
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Before the fix this blocked forever in open(2).
        let e = read_string(&fifo).unwrap_err().to_string();
        assert!(
            e.contains("fifo") && e.contains("not a regular file"),
            "{e}"
        );
        let e = read_string(dir.path()).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(read_string(&zero).is_err());
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "1.5\n").unwrap();
        assert_eq!(read_number(&ok).unwrap(), 1.5);
        assert!(read_regular(Path::new("/proc/loadavg")).is_ok());
    }

    #[test]
    fn dir_reads_files_relative_to_it_with_the_same_refusals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/mtu"), "1500\n").unwrap();
        std::fs::write(dir.path().join("big"), "x".repeat(100_000)).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        let d = Dir::open(dir.path()).unwrap();
        assert_eq!(d.read_regular("sub/mtu").unwrap(), "1500\n");
        assert_eq!(d.read_regular("big").unwrap().len(), 100_000);
        // Read again: the content is read afresh, not kept.
        std::fs::write(dir.path().join("sub/mtu"), "9000\n").unwrap();
        assert_eq!(d.read_regular("sub/mtu").unwrap(), "9000\n");
        let e = d.read_regular("fifo").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(d.read_regular("zero").is_err());
        assert!(d.read_regular("sub").is_err());
        assert_eq!(
            d.read_regular("missing").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        // A file is not a directory.
        let e = Dir::open(&dir.path().join("big")).err().unwrap();
        assert_eq!(e.raw_os_error(), Some(nix::libc::ENOTDIR));
    }

    #[test]
    fn the_read_buffer_is_reused_but_never_leaks_between_files() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("long");
        let short = dir.path().join("short");
        std::fs::write(&long, "a".repeat(5000)).unwrap();
        std::fs::write(&short, "b").unwrap();
        assert_eq!(read_regular(&long).unwrap().len(), 5000);
        assert_eq!(read_regular(&short).unwrap(), "b");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_regular(&bad).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
        assert_eq!(read_regular(&short).unwrap(), "b");
    }

    #[test]
    fn filters_are_anchored() {
        let f = DeviceFilter::new(None, Some("lo|veth.*"), "collector.netdev.device").unwrap();
        assert!(!f.allows("lo"));
        assert!(!f.allows("veth12"));
        assert!(f.allows("eth0"));
        assert!(f.allows("lo0"));
        let f = DeviceFilter::new(Some("eth0"), None, "x").unwrap();
        assert!(f.allows("eth0"));
        assert!(!f.allows("eth01"));
        assert!(DeviceFilter::new(Some("("), None, "x").is_err());
    }

    #[test]
    fn unanchored_filters_match_anywhere() {
        let f = DeviceFilter::unanchored(None, Some("eth"), "collector.netdev.device").unwrap();
        assert!(!f.allows("eth0"));
        assert!(!f.allows("veth3"));
        assert!(f.allows("lo"));
        let f = DeviceFilter::unanchored(Some("^vd[a-z]$"), None, "x").unwrap();
        assert!(f.allows("vda"));
        assert!(!f.allows("vda1"));
        let e = DeviceFilter::unanchored(None, Some("("), "collector.diskstats.device")
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("--collector.diskstats.device-exclude"),
            "{e}"
        );
    }

    fn matches(args: &[&str]) -> clap::ArgMatches {
        clap::Command::new("t")
            .arg(clap::Arg::new("p.device-include").long("p.device-include"))
            .arg(
                clap::Arg::new("p.device-exclude")
                    .long("p.device-exclude")
                    .default_value("^lo$"),
            )
            .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn explicit_include_overrides_a_default_exclude_only() {
        let config = crate::config::Config::default();
        let paths = crate::paths::Paths::default();
        let build = |m: &clap::ArgMatches| {
            DeviceFilter::from_flags(
                &crate::collectors::BuildContext {
                    paths: &paths,
                    matches: m,
                    config: &config,
                    state_dir: None,
                },
                "p.device",
            )
        };
        let f = build(&matches(&[])).unwrap();
        assert!(!f.allows("lo") && f.allows("eth0"));
        let f = build(&matches(&["--p.device-include=^lo$"])).unwrap();
        assert!(f.allows("lo") && !f.allows("eth0"));
        let e = build(&matches(&["--p.device-include=a", "--p.device-exclude=b"]))
            .err()
            .unwrap();
        assert!(e.to_string().contains("mutually exclusive"), "{e}");
        let f = build(&matches(&["--p.device-include=eth", "--p.device-exclude="])).unwrap();
        assert!(f.allows("eth0") && !f.allows("lo"));
    }
}
