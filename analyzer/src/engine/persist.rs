//! Saving the engine's per-series state to the data directory and loading it
//! at start, so that a restart resumes where it stopped instead of refitting
//! every series. Writes are atomic (temporary file, fsync, rename): a crash
//! mid-write leaves the previous state intact.
//!
//! The file is written one series at a time, and a model's state is held
//! as its JSON text until the series comes back: a parsed JSON tree takes
//! about eight times the memory of its text (10,000 series of `mad,drift`:
//! 2 GiB for a 235 MB file), and both the save (every few minutes) and a
//! restart's wait for the first cycle would otherwise hold one for every
//! series at once.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    pub anomaly: (String, ModelState),
    /// Forecasting model name and state.
    pub forecaster: (String, ModelState),
    /// Time of the last point taken in.
    pub last_t: i64,
    /// Recent (time, value, score) triples.
    #[serde(with = "recent_form")]
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

/// A model's saved state as its JSON text (see the module's doc).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelState(Box<RawValue>);

impl ModelState {
    /// The state a model saved.
    pub fn new(state: &serde_json::Value) -> ModelState {
        // A JSON value always has a text (its map keys are strings).
        let text = serde_json::value::to_raw_value(state).unwrap_or_else(|_| null());
        ModelState(text)
    }

    /// The state as a model loads it.
    pub fn value(&self) -> Result<serde_json::Value, crate::model::ModelError> {
        serde_json::from_str(self.0.get()).map_err(|e| crate::model::ModelError::BadState {
            model: "saved state",
            reason: e.to_string(),
        })
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_string()).expect("null is JSON")
}

impl PartialEq for ModelState {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// How a series' recent triples are saved: their times as runs of equal
/// spacing and their values and scores as f64 little-endian bytes in
/// base64 (about 21 bytes of JSON a triple, exact, against about 46 as a
/// list of numbers). The list saved until 2026-12-06 still loads.
mod recent_form {
    use crate::model::compact::{self, F64s, Run};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Compact {
        first_t: i64,
        /// `[spacing, count]` runs between consecutive times.
        runs: Vec<Run>,
        values: F64s,
        scores: F64s,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Saved {
        List(Vec<(i64, f64, f64)>),
        Compact(Compact),
    }

    pub fn serialize<S: Serializer>(recent: &[(i64, f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        Compact {
            first_t: recent.first().map_or(0, |r| r.0),
            runs: compact::runs_of(recent.iter().map(|r| r.0)),
            values: F64s(recent.iter().map(|r| r.1).collect()),
            scores: F64s(recent.iter().map(|r| r.2).collect()),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(i64, f64, f64)>, D::Error> {
        use serde::de::Error;
        let c = match Saved::deserialize(d)? {
            Saved::List(l) => return Ok(l),
            Saved::Compact(c) => c,
        };
        let (values, scores) = (c.values.0, c.scores.0);
        if scores.len() != values.len() {
            return Err(D::Error::custom(format!(
                "recent: {} values and {} scores",
                values.len(),
                scores.len()
            )));
        }
        compact::check_runs(&c.runs, values.len())
            .map_err(|e| D::Error::custom(format!("recent times: {e}")))?;
        Ok(compact::times(c.first_t, &c.runs)
            .zip(values)
            .zip(scores)
            .map(|((t, v), s)| (t, v, s))
            .collect())
    }
}

#[derive(Deserialize)]
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
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read saved state; refitting");
                return Vec::new();
            }
        };
        // Read as it is parsed: the file's text is not held whole.
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        match serde_json::from_reader::<_, File>(reader) {
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

    /// Replaces the saved state atomically, writing the series as they
    /// come (each is made when its turn comes, and dropped once written);
    /// returns how many were written.
    pub fn save(&self, series: impl IntoIterator<Item = SavedSeries>) -> std::io::Result<usize> {
        let mut n = 0;
        imd_exporter::fsutil::write_atomically_with(&self.path, |w| {
            write!(w, "{{\"version\":{VERSION},\"series\":[")?;
            for s in series {
                if n > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, &s)?;
                n += 1;
            }
            w.write_all(b"]}")
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes one saved series per model, fitted on eight days of an
    /// hourly daily cycle, into `$IMD_FUZZ_SEEDS` as seeds of the
    /// `model_state` fuzz target (see fuzz/README.md):
    /// `IMD_FUZZ_SEEDS=$PWD/fuzz/seeds/model_state cargo test -p imd-analyzer
    /// --lib write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes fuzz seeds when asked to"]
    fn write_fuzz_seeds() {
        use crate::model::{self, ModelParams, Point};
        let dir =
            std::path::PathBuf::from(std::env::var("IMD_FUZZ_SEEDS").expect("IMD_FUZZ_SEEDS"));
        std::fs::create_dir_all(&dir).unwrap();
        let history: Vec<Point> = (0..192)
            .map(|i| Point {
                t: i * 3_600_000,
                v: 50.0 + 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin() + (i % 7) as f64,
            })
            .collect();
        let params = ModelParams {
            window: 192,
            ..ModelParams::default()
        };
        // The forests of `iforest` (and of `ensemble`, which holds one) save
        // about 280 KB: seeds that large slow every mutation down.
        for name in model::NAMES
            .iter()
            .filter(|n| !["iforest", "ensemble"].contains(n))
        {
            let mut m = model::build(name, &params).unwrap();
            m.fit(&history[..168]).unwrap();
            let recent: Vec<(i64, f64, f64)> = history[168..]
                .iter()
                .map(|p| {
                    let s = m.score(*p);
                    m.update(*p);
                    (p.t, p.v, s)
                })
                .collect();
            let s = SavedSeries {
                query: "fuzz".into(),
                labels: vec![("__name__".into(), "x".into())],
                anomaly: (name.to_string(), ModelState::new(&m.save())),
                forecaster: ("snaive".into(), ModelState::new(&serde_json::Value::Null)),
                last_t: history.last().unwrap().t,
                recent,
                group: None,
            };
            std::fs::write(dir.join(name), serde_json::to_vec(&s).unwrap()).unwrap();
        }
    }

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::in_dir(&dir.path().join("sub")).unwrap();
        assert!(f.load().is_empty());
        let s = SavedSeries {
            query: "q".into(),
            labels: vec![("__name__".into(), "x".into())],
            anomaly: ("mad".into(), ModelState::new(&serde_json::json!({"a": 1}))),
            forecaster: ("drift".into(), ModelState::new(&serde_json::Value::Null)),
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

    #[test]
    fn series_are_written_as_they_come_and_states_keep_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::in_dir(dir.path()).unwrap();
        let state =
            serde_json::json!({"points": [{"t": 1, "v": 0.1}, {"t": 2, "v": 1e-300}], "n": 2});
        let made = std::cell::Cell::new(0);
        let series = (0..3).map(|i| {
            made.set(made.get() + 1);
            SavedSeries {
                query: "q".into(),
                labels: vec![("i".into(), i.to_string())],
                anomaly: ("mad".into(), ModelState::new(&state)),
                forecaster: ("drift".into(), ModelState::new(&serde_json::Value::Null)),
                last_t: i,
                recent: vec![(i, 0.5, 0.25)],
                group: None,
            }
        });
        assert_eq!(f.save(series).unwrap(), 3);
        assert_eq!(made.get(), 3);
        let text = std::fs::read_to_string(f.path()).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["version"], 1);
        assert_eq!(parsed["series"].as_array().unwrap().len(), 3);
        let loaded = f.load();
        assert_eq!(loaded.len(), 3);
        // A state comes back as the model saved it, numbers bit for bit.
        assert_eq!(loaded[2].anomaly.1.value().unwrap(), state);
        assert_eq!(loaded[2].labels, vec![("i".to_string(), "2".to_string())]);
        // No series: a valid, empty file.
        assert_eq!(f.save(std::iter::empty()).unwrap(), 0);
        assert!(f.load().is_empty());
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temporary file is left"
        );
    }

    #[test]
    fn recent_triples_save_compactly_and_exactly() {
        let recent = vec![
            (0, 1.5, 0.25),
            (60_000, -0.0, f64::NAN),
            (120_000, 1e-300, 1.0),
            (180_000, f64::MAX, 0.0),
            (195_000, 3.0, 0.5),
            (195_000, 4.0, 0.75),
            (-5, 5.0, 0.125),
        ];
        let s = SavedSeries {
            query: "q".into(),
            labels: vec![],
            anomaly: ("mad".into(), ModelState::new(&serde_json::Value::Null)),
            forecaster: ("drift".into(), ModelState::new(&serde_json::Value::Null)),
            last_t: 195_000,
            recent,
            group: None,
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains(r#""runs":[[60000,3],[15000,1],[0,1],[-195005,1]]"#),
            "{text}"
        );
        let back: SavedSeries = serde_json::from_str(&text).unwrap();
        let bits = |r: &[(i64, f64, f64)]| -> Vec<(i64, u64, u64)> {
            r.iter()
                .map(|x| (x.0, x.1.to_bits(), x.2.to_bits()))
                .collect()
        };
        assert_eq!(bits(&back.recent), bits(&s.recent));
        // Empty, and damaged: counts that do not match are refused.
        let empty = SavedSeries {
            recent: vec![],
            ..s.clone()
        };
        let back: SavedSeries =
            serde_json::from_str(&serde_json::to_string(&empty).unwrap()).unwrap();
        assert!(back.recent.is_empty());
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["recent"]["runs"] = serde_json::json!([[60000, 2]]);
        let err = serde_json::from_value::<SavedSeries>(v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("recent") || err.contains("variant"), "{err}");
    }

    #[test]
    fn model_states_compare_by_text_and_parse_back() {
        let bad = ModelState(RawValue::from_string("[1, 2]".into()).unwrap());
        assert!(bad.value().is_ok());
        let s: ModelState = serde_json::from_str(r#"{"a": [1, 2.5, null]}"#).unwrap();
        assert_eq!(s.value().unwrap(), serde_json::json!({"a": [1, 2.5, null]}));
        assert_eq!(s, s.clone());
        assert_ne!(s, bad);
    }
}
