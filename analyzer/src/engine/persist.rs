//! Saving the engine's per-series state to the data directory and loading it
//! at start, so that a restart resumes where it stopped instead of refitting
//! every series. Writes are atomic (temporary file, fsync, rename): a crash
//! mid-write leaves the previous state intact.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::read::Labels;

/// Version of the file layout; a file of another version is ignored.
const VERSION: u32 = 1;

/// The saved state of one series.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedSeries {
    /// Name of the query the series belongs to.
    pub query: String,
    /// The series' labels.
    pub labels: Labels,
    /// Anomaly model name and state.
    pub anomaly: (String, serde_json::Value),
    /// Forecasting model name and state.
    pub forecaster: (String, serde_json::Value),
    /// Time of the last point taken in.
    pub last_t: i64,
    /// Recent (time, value, score) triples.
    pub recent: Vec<(i64, f64, f64)>,
    /// Set for a group of a multivariate query, whose labels are the
    /// group's and whose `anomaly` is the group's detector; absent for
    /// single series (and in files written before groups were saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<SavedGroup>,
}

/// What a group saves besides its detector.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SavedGroup {
    /// Each input's share in the latest score, in input order.
    #[serde(default)]
    pub contributions: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    series: Vec<SavedSeries>,
}

/// Where the engine's state lives.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file in a data directory (created when missing).
    pub fn in_dir(dir: &Path) -> std::io::Result<StateFile> {
        std::fs::create_dir_all(dir)?;
        Ok(StateFile {
            path: dir.join("engine-state.json"),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads saved series; a missing file is empty, an unreadable or
    /// damaged one is reported and treated as empty (models refit).
    pub fn load(&self) -> Vec<SavedSeries> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read saved state; refitting");
                return Vec::new();
            }
        };
        match serde_json::from_slice::<File>(&bytes) {
            Ok(f) if f.version == VERSION => f.series,
            Ok(f) => {
                tracing::warn!(path = %self.path.display(), version = f.version, "saved state has another version; refitting");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "saved state is damaged; refitting");
                Vec::new()
            }
        }
    }

    /// Replaces the saved state atomically.
    pub fn save(&self, series: Vec<SavedSeries>) -> std::io::Result<()> {
        let body = serde_json::to_vec(&File {
            version: VERSION,
            series,
        })
        .map_err(std::io::Error::other)?;
        imd_exporter::fsutil::write_atomically(&self.path, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::in_dir(&dir.path().join("sub")).unwrap();
        assert!(f.load().is_empty());
        let s = SavedSeries {
            query: "q".into(),
            labels: vec![("__name__".into(), "x".into())],
            anomaly: ("mad".into(), serde_json::json!({"a": 1})),
            forecaster: ("drift".into(), serde_json::Value::Null),
            last_t: 5,
            recent: vec![(5, 1.0, 0.5)],
            group: None,
        };
        let g = SavedGroup {
            contributions: vec![0.25, 0.75],
        };
        let group = SavedSeries {
            group: Some(g.clone()),
            ..s.clone()
        };
        f.save(vec![s.clone(), group.clone()]).unwrap();
        assert_eq!(f.load(), vec![s.clone(), group]);
        // A single series is written as before groups were saved, and a
        // file of that time (no `group`) still loads.
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert_eq!(text.matches("\"group\"").count(), 1, "{text}");
        let old = r#"{"version":1,"series":[{"query":"q","labels":[["__name__","x"]],
            "anomaly":["mad",{"a":1}],"forecaster":["drift",null],"last_t":5,
            "recent":[[5,1.0,0.5]]}]}"#;
        std::fs::write(f.path(), old).unwrap();
        assert_eq!(f.load(), vec![s]);
        std::fs::write(f.path(), b"{ half a file").unwrap();
        assert!(f.load().is_empty());
    }
}
