//! Where the exporter finds the host's /proc, /sys and root file system, so
//! that it can run in a container with the host's trees mounted elsewhere.

use std::path::{Path, PathBuf};

/// The roots every collector reads through (`--path.procfs`, `--path.sysfs`,
/// `--path.rootfs`, `--path.udev.data`, as node_exporter names them).
#[derive(Debug, Clone)]
pub struct Paths {
    /// Mount point of the proc file system, normally `/proc`.
    pub procfs: PathBuf,
    /// Mount point of the sys file system, normally `/sys`.
    pub sysfs: PathBuf,
    /// The host's root file system, normally `/`.
    pub rootfs: PathBuf,
    /// udev's database directory, normally `/run/udev/data`.
    pub udev_data: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            rootfs: "/".into(),
            udev_data: "/run/udev/data".into(),
        }
    }
}

impl Paths {
    /// A path under the proc root, e.g. `proc("stat")`.
    pub fn proc(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.procfs.join(rel)
    }

    /// A path under the sys root, e.g. `sys("class/net")`.
    pub fn sys(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// A path of the host seen through the root file system, e.g. a mount
    /// point from /proc/mounts; absolute paths are re-rooted.
    pub fn root(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        self.rootfs.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Strips the root file system prefix from a path, giving the host's view
    /// (node_exporter reports mount points this way).
    pub fn host_view(&self, path: &Path) -> PathBuf {
        if self.rootfs == Path::new("/") {
            return path.to_path_buf();
        }
        match path.strip_prefix(&self.rootfs) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_rerooted() {
        let p = Paths {
            rootfs: "/host".into(),
            ..Paths::default()
        };
        assert_eq!(p.root("/var/lib"), PathBuf::from("/host/var/lib"));
        assert_eq!(
            p.host_view(Path::new("/host/var/lib")),
            PathBuf::from("/var/lib")
        );
        assert_eq!(p.proc("stat"), PathBuf::from("/proc/stat"));
    }
}
