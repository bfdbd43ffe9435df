//! The offsets reached in each log file, kept across restarts in
//! `<state dir>/log-offsets.json` so that a restarted exporter neither
//! re-reads nor skips lines.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tail::FileId;

/// The state file's name inside the state directory.
pub(crate) const FILE_NAME: &str = "log-offsets.json";

/// Where reading of one path stopped: the file there (device and inode) and
/// the offset after the last line handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Saved {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

impl Saved {
    /// The identity of the file the offset belongs to.
    pub fn id(&self) -> FileId {
        FileId {
            dev: self.dev,
            ino: self.ino,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetFile {
    version: u32,
    files: BTreeMap<String, Saved>,
}

const VERSION: u32 = 1;

/// Reads the saved offsets by path. A missing file is an empty state; an
/// unreadable or malformed one is logged and treated as empty, so that a
/// damaged state file costs at most some re-read lines, never the start.
pub(crate) fn load(file: &Path) -> BTreeMap<String, Saved> {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read the log offsets; starting afresh");
            return BTreeMap::new();
        }
    };
    match serde_json::from_slice::<OffsetFile>(&text) {
        Ok(f) if f.version == VERSION => f.files,
        Ok(f) => {
            tracing::warn!(file = %file.display(), version = f.version, "unknown log offsets version; starting afresh");
            BTreeMap::new()
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "malformed log offsets; starting afresh");
            BTreeMap::new()
        }
    }
}

/// Writes the offsets atomically: to a temporary file in the same directory,
/// flushed to disk, then renamed over the old one. Creates the directory.
pub(crate) fn save(file: &Path, files: &BTreeMap<String, Saved>) -> io::Result<()> {
    let mut body = serde_json::to_vec_pretty(&OffsetFile {
        version: VERSION,
        files: files.clone(),
    })
    .map_err(io::Error::other)?;
    body.push(b'\n');
    crate::fsutil::write_atomically(file, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_damage() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join(FILE_NAME);
        assert!(load(&file).is_empty());
        let mut m = BTreeMap::new();
        m.insert(
            "/var/log/a.log".to_string(),
            Saved {
                dev: 1,
                ino: 2,
                offset: 3,
            },
        );
        save(&file, &m).unwrap();
        assert_eq!(load(&file), m);
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(file.parent().unwrap()).unwrap().count(),
            1
        );
        std::fs::write(&file, "{not json").unwrap();
        assert!(load(&file).is_empty());
        std::fs::write(&file, r#"{"version": 9, "files": {}}"#).unwrap();
        assert!(load(&file).is_empty());
    }
}
