//! Small helpers the collectors share for reading /proc and /sys.

use std::path::Path;

use super::CollectError;

/// Opens a file for reading only if it is a regular file. The open is
/// non-blocking, so a FIFO put where a /proc or /sys file should be fails at
/// once instead of blocking the scrape until a writer comes, and a device
/// (such as a link to /dev/zero, which never ends) is refused too. /proc and
/// /sys files are regular files; non-blocking mode changes nothing for them.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
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
    Ok(file)
}

/// `std::fs::read_to_string` through [`open_regular`]: never blocks on a
/// FIFO, never reads a device.
pub fn read_regular(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    open_regular(path)?.read_to_string(&mut text)?;
    Ok(text)
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
