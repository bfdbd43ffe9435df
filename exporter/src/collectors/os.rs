//! `os`: the operating system's identity from os-release(5) as labels of
//! `node_os_info`, and its major.minor version as `node_os_version`, as
//! node_exporter 1.5 reports them. Reads `<rootfs>/etc/os-release`, falling
//! back to `<rootfs>/usr/lib/os-release`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::util::parse_error;
use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;
use crate::paths::Paths;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "os",
    help: "Operating system name and version from os-release (node_os_info, node_os_version)",
    default_enabled: true,
    configured: super::not_configured,
    flags: Vec::new,
    build,
};

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(OsRelease {
        paths: ctx.paths.clone(),
    }))
}

/// The files tried in order, as host paths.
const FILES: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// `node_os_info` labels (in name order) and the os-release keys they come from.
const INFO_LABELS: [(&str, &str); 12] = [
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

struct OsRelease {
    paths: Paths,
}

impl OsRelease {
    /// A host path under the root file system. An absolute symbolic link
    /// (`/etc/os-release -> /usr/lib/os-release`) is followed inside the
    /// root file system rather than in the exporter's own, so that a
    /// containerised exporter reports the host.
    fn resolve(&self, host_path: &str) -> PathBuf {
        let p = self.paths.root(host_path);
        match std::fs::read_link(&p) {
            Ok(target) if target.is_absolute() => self.paths.root(target),
            _ => p,
        }
    }
}

impl Collector for OsRelease {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let mut found = None;
        for file in FILES {
            let path = self.resolve(file);
            match super::util::read_regular(&path) {
                Ok(text) => {
                    found = Some((path, text));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(CollectError::Io { path, source }),
            }
        }
        let Some((path, text)) = found else {
            return Err(CollectError::NoData(format!(
                "no os-release file ({}) under {}",
                FILES.join(", "),
                self.paths.rootfs.display()
            )));
        };
        let vars = parse_os_release(&path, &text)?;
        let get = |key: &str| vars.get(key).map(String::as_str).unwrap_or("");

        let mut info = Family::gauge(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, \
             name, pretty_name, variant, variant_id, version, version_codename, version_id.",
        );
        info.push(
            INFO_LABELS.iter().map(|(label, key)| (*label, get(key))),
            1.0,
        );
        let mut out = vec![info];

        let version = major_minor(get("VERSION_ID"));
        if version > 0.0 {
            let mut f = Family::gauge(
                "node_os_version",
                "Metric containing the major.minor part of the OS version.",
            );
            f.push(
                [
                    ("id", get("ID")),
                    ("id_like", get("ID_LIKE")),
                    ("name", get("NAME")),
                ],
                version,
            );
            out.push(f);
        }
        Ok(out)
    }
}

/// The leading `major[.minor]` of a VERSION_ID as a number (`"22.04"` →
/// 22.04, `"12"` → 12, `"3.18.4"` → 3.18); 0 when it does not start with a
/// digit (rolling releases), in which case no version metric is written.
fn major_minor(version_id: &str) -> f64 {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let major = digits(version_id);
    if major == 0 {
        return 0.0;
    }
    let mut end = major;
    if version_id[major..].starts_with('.') {
        end = major + 1 + digits(&version_id[major + 1..]);
    }
    version_id[..end]
        .trim_end_matches('.')
        .parse()
        .unwrap_or(0.0)
}

/// Parses an os-release file: `KEY=value` lines, values optionally in
/// double quotes (with `\"`, `\\`, `\$` and `` \` `` escapes) or single
/// quotes; blank lines and `#` comments are skipped. Written by hand because
/// the format is a small shell-like subset no maintained crate parses.
fn parse_os_release(path: &Path, text: &str) -> Result<HashMap<String, String>, CollectError> {
    let mut vars = HashMap::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |msg: String| parse_error(path, idx + 1, msg);
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!("expected KEY=value, found {line:?}")));
        };
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(err(format!("invalid variable name {key:?}")));
        }
        let value = unquote(value).map_err(|m| err(format!("{key}: {m}")))?;
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

/// The value of one assignment, quotes and escapes removed.
fn unquote(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = value.chars();
    let rest: String = match value.chars().next() {
        Some('"') => {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated double quote".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                        Some('\n') | None => {}
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                    },
                    Some(c) => out.push(c),
                }
            }
            chars.collect()
        }
        Some('\'') => {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated single quote".into()),
                    Some('\'') => break,
                    Some(c) => out.push(c),
                }
            }
            chars.collect()
        }
        _ => {
            // Unquoted: up to white space; a backslash escapes the next character.
            let mut escaped = false;
            let mut rest = String::new();
            for c in chars.by_ref() {
                if escaped {
                    out.push(c);
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c.is_whitespace() {
                    rest.push(c);
                    break;
                } else if c == '"' || c == '\'' {
                    return Err(format!("unexpected quote in unquoted value {value:?}"));
                } else {
                    out.push(c);
                }
            }
            rest.extend(chars);
            rest
        }
    };
    let rest = rest.trim();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(format!("unexpected text after the value: {rest:?}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's /usr/lib/os-release (Debian 12).
    const DEBIAN: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

    const UBUNTU: &str = r#"PRETTY_NAME="Ubuntu 22.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.3 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=jammy
"#;

    fn rootfs(files: &[(&str, &str)]) -> (tempfile::TempDir, OsRelease) {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let c = OsRelease {
            paths: Paths {
                rootfs: dir.path().into(),
                ..Paths::default()
            },
        };
        (dir, c)
    }

    fn labels(f: &Family) -> Vec<(&str, &str)> {
        f.samples[0]
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn debian_like_node_exporter() {
        let (_d, c) = rootfs(&[("etc/os-release", DEBIAN)]);
        let f = c.collect().unwrap();
        assert_eq!(f[0].name, "node_os_info");
        assert_eq!(f[0].samples[0].value, 1.0);
        assert_eq!(
            labels(&f[0]),
            vec![
                ("build_id", ""),
                ("id", "debian"),
                ("id_like", ""),
                ("image_id", ""),
                ("image_version", ""),
                ("name", "Debian GNU/Linux"),
                ("pretty_name", "Debian GNU/Linux 12 (bookworm)"),
                ("variant", ""),
                ("variant_id", ""),
                ("version", "12 (bookworm)"),
                ("version_codename", "bookworm"),
                ("version_id", "12"),
            ]
        );
        assert_eq!(f[1].name, "node_os_version");
        assert_eq!(
            labels(&f[1]),
            vec![
                ("id", "debian"),
                ("id_like", ""),
                ("name", "Debian GNU/Linux")
            ]
        );
        assert_eq!(f[1].samples[0].value, 12.0);
    }

    #[test]
    fn falls_back_to_usr_lib_and_reads_minor_version() {
        let (_d, c) = rootfs(&[("usr/lib/os-release", UBUNTU)]);
        let f = c.collect().unwrap();
        assert_eq!(f[1].samples[0].value, 22.04);
        assert_eq!(labels(&f[1])[1], ("id_like", "debian"));
    }

    #[test]
    fn absolute_symlink_is_followed_inside_rootfs() {
        let (d, c) = rootfs(&[("usr/lib/os-release", UBUNTU)]);
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", d.path().join("etc/os-release")).unwrap();
        let f = c.collect().unwrap();
        assert_eq!(labels(&f[0])[1], ("id", "ubuntu"));
    }

    #[test]
    fn rolling_release_has_no_version_metric() {
        let (_d, c) = rootfs(&[(
            "etc/os-release",
            "NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n",
        )]);
        let f = c.collect().unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(labels(&f[0])[0], ("build_id", "rolling"));
    }

    #[test]
    fn no_file_is_no_data() {
        let (_d, c) = rootfs(&[]);
        assert!(matches!(c.collect(), Err(CollectError::NoData(_))));
    }

    #[test]
    fn quoting_and_comments() {
        let v = parse_os_release(
            Path::new("x"),
            "# comment\n\nA=\"x \\\"y\\\" \\$z\"\nB='a b'\nC=plain # trailing\nexport D=1\nE=\n",
        )
        .unwrap();
        assert_eq!(v["A"], "x \"y\" $z");
        assert_eq!(v["B"], "a b");
        assert_eq!(v["C"], "plain");
        assert_eq!(v["D"], "1");
        assert_eq!(v["E"], "");
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let e =
            parse_os_release(Path::new("/r/etc/os-release"), "ID=x\nNAME=\"open\n").unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("/r/etc/os-release"),
            "{e}"
        );
        assert!(parse_os_release(Path::new("x"), "no equals sign\n").is_err());
        assert!(parse_os_release(Path::new("x"), "1BAD=x\n").is_err());
        assert!(parse_os_release(Path::new("x"), "A=two words\n").is_err());
        let (_d, c) = rootfs(&[("etc/os-release", "garbage\n")]);
        assert!(matches!(c.collect(), Err(CollectError::Parse { .. })));
    }

    #[test]
    fn versions() {
        assert_eq!(major_minor("12"), 12.0);
        assert_eq!(major_minor("22.04"), 22.04);
        assert_eq!(major_minor("3.18.4"), 3.18);
        assert_eq!(major_minor("9."), 9.0);
        assert_eq!(major_minor("rolling"), 0.0);
        assert_eq!(major_minor(""), 0.0);
    }

    #[test]
    fn real_rootfs_is_sane() {
        let f = OsRelease {
            paths: Paths::default(),
        }
        .collect()
        .unwrap();
        let info = &f[0];
        assert_eq!(info.samples[0].labels.len(), 12);
        let id = &info.samples[0].labels[1];
        assert_eq!(id.0, "id");
        assert!(!id.1.is_empty());
    }
}
