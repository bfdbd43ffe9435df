//! The exporter's YAML configuration (`--config.file`) and the loader both imd
//! binaries use: strict (unknown keys are errors) and precise (errors name the
//! file, the line and the key).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::collectors::logs::LogsConfig;
use crate::collectors::processgroups::ProcessGroupConfig;

/// A configuration file that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {error}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{file}: {location}{key}{message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// `line L column C: ` when known.
        location: String,
        /// "key `a.b[2].c`: " when known.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// An error about a key found valid YAML but an invalid value.
    pub fn at_key(file: &Path, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            location: String::new(),
            key: format!("key `{key}`: "),
            message: message.into(),
        }
    }
}

/// A value that failed a section's own validation: the key's path relative
/// to the section (`.files[0].rules[1].regex`, empty for the section itself)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    /// Path below the section, starting with `.` or `[` (or empty).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl KeyError {
    /// A new error at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> KeyError {
        KeyError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses YAML text into `T`, rejecting unknown keys where `T` says so, with
/// errors naming `file`, the line and the path of the offending key.
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    // An empty file is an empty mapping, so that every default applies.
    let text = if text.trim().is_empty() { "{}" } else { text };
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let location = inner
            .location()
            .map(|l| format!("line {} column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        let mut message = inner.to_string();
        // serde_yaml appends " at line L column C"; the location is already in front.
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // serde_yaml also starts some messages with its own view of the path.
        if let Some((prefix, rest)) = message.split_once(": ")
            && !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_alphanumeric() || "._[]-".contains(c))
        {
            message = rest.to_string();
        }
        let key = if path.is_empty() || path == "." {
            String::new()
        } else {
            format!("key `{path}`: ")
        };
        ConfigError::Invalid {
            file: file.to_path_buf(),
            location,
            key,
            message,
        }
    })
}

/// Reads and parses a YAML file into `T` (see [`parse_yaml`]).
pub fn load_yaml<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    parse_yaml(file, &read_text(file)?)
}

/// The text of a configuration file, or an error naming it.
pub fn read_text(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|error| ConfigError::Read {
        file: file.to_path_buf(),
        error,
    })
}

/// The exporter's configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per-collector switches and polling intervals, keyed by collector name.
    #[serde(default)]
    pub collectors: BTreeMap<String, CollectorSettings>,
    /// Groups of processes reported together (the `processgroups` collector).
    #[serde(default)]
    pub process_groups: Vec<ProcessGroupConfig>,
    /// Directory of `*.prom` files merged into the output (the `textfile` collector).
    #[serde(default)]
    pub textfile: Option<TextfileConfig>,
    /// Log files turned into metrics (the `logs` collector).
    #[serde(default)]
    pub logs: Option<LogsConfig>,
}

/// Settings of one collector.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSettings {
    /// Turns the collector on or off (a command-line flag still wins).
    pub enabled: Option<bool>,
    /// Reads the system at most this often; scrapes in between are served the
    /// cached result. For expensive collectors such as `processes`.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

/// Where the textfile collector looks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextfileConfig {
    /// Directory whose `*.prom` files are read on every scrape.
    pub directory: PathBuf,
}

impl Config {
    /// Loads and validates the exporter's configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let config: Config = load_yaml(file)?;
        config.validate(file)?;
        Ok(config)
    }

    /// Checks what the schema alone cannot: collector names exist, and each
    /// section's own rules (regexes compile, names are valid metric names).
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        for name in self.collectors.keys() {
            if crate::collectors::spec(name).is_none() {
                let known: Vec<_> = crate::collectors::ALL.iter().map(|s| s.name).collect();
                return Err(ConfigError::at_key(
                    file,
                    &format!("collectors.{name}"),
                    format!("unknown collector; known: {}", known.join(", ")),
                ));
            }
        }
        for (i, group) in self.process_groups.iter().enumerate() {
            group.validate().map_err(|e| {
                ConfigError::at_key(file, &format!("process_groups[{i}]{}", e.key), e.message)
            })?;
        }
        if let Some(logs) = &self.logs {
            logs.validate()
                .map_err(|e| ConfigError::at_key(file, &format!("logs{}", e.key), e.message))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = parse_yaml::<Config>(
            Path::new("x.yml"),
            "collectors:\n  cpu:\n    enabld: true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "x.yml: line 3 column 5: key `collectors.cpu.enabld`: unknown field `enabld`"
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_durations_name_their_key() {
        let err = parse_yaml::<Config>(
            Path::new("x.yml"),
            "collectors:\n  processes:\n    interval: soon\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("key `collectors.processes.interval`"), "{err}");
    }

    #[test]
    fn unknown_collectors_are_rejected() {
        let c: Config =
            parse_yaml(Path::new("x.yml"), "collectors:\n  cpuu: {enabled: true}\n").unwrap();
        let err = c.validate(Path::new("x.yml")).unwrap_err().to_string();
        assert!(
            err.contains("key `collectors.cpuu`: unknown collector"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_the_default() {
        let c: Config = parse_yaml(Path::new("x.yml"), "").unwrap();
        assert!(c.collectors.is_empty());
    }
}
