//! `textfile`: metrics written by other programs (cron jobs, scripts) as
//! `*.prom` files in a directory, read fresh on every scrape, as
//! node_exporter's textfile collector does.
//!
//! Compatible with node_exporter 1.5: the directory flag may be a glob
//! matching several directories; families without HELP get "Metric read from
//! FILE[, FILE...]"; a file that does not parse, has sample timestamps or
//! cannot be read is skipped whole and sets `node_textfile_scrape_error` to 1;
//! `node_textfile_mtime_seconds{file}` (full path) is reported for each file
//! read successfully. Stricter than node_exporter where it would serve broken
//! output: a family repeated in another file with a different type or HELP,
//! or a series repeated in another file, makes that later file an error.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::{Family, ParseOptions, parse_text_with};

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "textfile",
    help: "Metrics from *.prom files in --collector.textfile.directory",
    default_enabled: true,
    configured: |config| config.textfile.is_some(),
    flags,
    build,
};

/// Files larger than this are skipped with an error instead of being read.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

fn flags() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new("collector.textfile.directory")
            .long("collector.textfile.directory")
            .value_name("DIR")
            .help(
                "Directory to read *.prom text files with metrics from (a glob may match several); \
                 overrides textfile.directory of the config file",
            ),
    ]
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(Textfile {
        directory: directory_of(ctx),
        max_file_bytes: MAX_FILE_BYTES,
    }))
}

/// The flag's directory, else the config file's, else none.
fn directory_of(ctx: &BuildContext) -> Option<String> {
    ctx.flag("collector.textfile.directory")
        .filter(|d| !d.is_empty())
        .or_else(|| {
            ctx.config
                .textfile
                .as_ref()
                .map(|t| t.directory.to_string_lossy().into_owned())
        })
}

struct Textfile {
    /// Directory (or glob of directories); `None` reads nothing.
    directory: Option<String>,
    max_file_bytes: u64,
}

impl Collector for Textfile {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        let mut merged = Merged::default();
        let mut mtimes: Vec<(String, f64)> = Vec::new();
        let mut errored = false;
        if let Some(pattern) = &self.directory {
            for dir in directories(pattern) {
                let files = match prom_files(&dir) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(directory = %dir.display(), error = %e, "cannot read the textfile directory");
                        errored = true;
                        continue;
                    }
                };
                for path in files {
                    let shown = path.display().to_string();
                    let result = read_file(&path, self.max_file_bytes)
                        .and_then(|(families, mtime)| merged.add(&shown, families).map(|()| mtime));
                    match result {
                        Ok(mtime) => mtimes.push((shown, mtime)),
                        Err(e) => {
                            tracing::warn!(file = %shown, error = %e, "skipped a broken textfile");
                            errored = true;
                        }
                    }
                }
            }
        }
        let mut out = merged.finish();
        if !mtimes.is_empty() {
            mtimes.sort_by(|a, b| a.0.cmp(&b.0));
            let mut f = Family::gauge(
                "node_textfile_mtime_seconds",
                "Unixtime mtime of textfiles successfully read.",
            );
            for (file, mtime) in mtimes {
                f.push([("file", file)], mtime);
            }
            out.push(f);
        }
        let mut err = Family::gauge(
            "node_textfile_scrape_error",
            "1 if there was an error opening or reading a file, 0 otherwise",
        );
        err.push_value(if errored { 1.0 } else { 0.0 });
        out.push(err);
        Ok(out)
    }
}

/// The directories a `--collector.textfile.directory` value names: the
/// directories its glob matches, or the value itself when it is no glob or
/// matches nothing (so that a missing directory is reported).
fn directories(pattern: &str) -> Vec<PathBuf> {
    let matched: Vec<PathBuf> = glob::glob(pattern)
        .map(|paths| paths.filter_map(Result::ok).collect())
        .unwrap_or_default();
    if matched.is_empty() {
        vec![PathBuf::from(pattern)]
    } else {
        matched
    }
}

/// The `*.prom` entries of a directory, sorted by name.
fn prom_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".prom"))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and parses one file; returns its families and its modification
/// time (seconds, taken after parsing so that a failure does not look fresh).
fn read_file(path: &Path, max_bytes: u64) -> Result<(Vec<Family>, f64), String> {
    // A non-blocking open: a plain open of a FIFO blocks until a writer
    // comes, before the file-type check below could refuse it.
    let file = super::util::open_regular(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => "not a regular file".to_string(),
        _ => format!("cannot open: {e}"),
    })?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        // A FIFO would block the scrape, a directory cannot be parsed.
        return Err("not a regular file".into());
    }
    if meta.len() > max_bytes {
        return Err(format!(
            "file is {} bytes, more than the limit of {max_bytes}",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` also bounds a file that grows while it is read.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "file grew beyond the limit of {max_bytes} bytes while being read"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("line {line}: invalid UTF-8")
    })?;
    let families = parse_text_with(
        &text,
        ParseOptions {
            allow_timestamps: false,
        },
    )
    .map_err(|e| {
        if e.message.contains("timestamp, which is not allowed") {
            format!(
                "line {}: contains unsupported client-side timestamps, skipping entire file",
                e.line
            )
        } else {
            e.to_string()
        }
    })?;
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("cannot stat: {e}"))?;
    let secs = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as f64,
        Err(e) => -(e.duration().as_secs() as f64),
    };
    Ok((families, secs))
}

/// Families of all files read so far, with what is needed to check the next
/// file against them in time proportional to that file's size.
#[derive(Default)]
struct Merged {
    families: Vec<Family>,
    by_name: HashMap<String, usize>,
    /// Whether each family's help came from a HELP line.
    explicit_help: Vec<bool>,
    /// Files that gave each family, for the default help text.
    sources: Vec<Vec<String>>,
    /// Which family every sample name belongs to (`x_count` of a summary
    /// must not also be a family of its own elsewhere).
    sample_names: HashMap<String, usize>,
    /// The series (sample name and sorted labels) of each family, built
    /// only once a second file adds to the family: the parser has already
    /// refused duplicates within a file, so families from one file (the
    /// common case) never pay for this.
    series: Vec<Option<HashSet<SeriesKey>>>,
}

type SeriesKey = (String, Vec<(String, String)>);

impl Merged {
    /// Adds one file's families, or none of them if any clashes with what
    /// earlier files gave.
    fn add(&mut self, file: &str, families: Vec<Family>) -> Result<(), String> {
        // Check everything before changing anything.
        let mut new_keys: Vec<(usize, Vec<SeriesKey>)> = Vec::new();
        for f in &families {
            let existing = self.by_name.get(&f.name).copied();
            if let Some(i) = existing {
                let old = &self.families[i];
                if old.kind != f.kind {
                    return Err(format!(
                        "metric {} has type {} here but {} in {}",
                        f.name,
                        f.kind,
                        old.kind,
                        self.sources[i].join(", ")
                    ));
                }
                if !f.help.is_empty() && self.explicit_help[i] && old.help != f.help {
                    return Err(format!(
                        "metric {} has HELP {:?} here but {:?} in {}",
                        f.name,
                        f.help,
                        old.help,
                        self.sources[i].join(", ")
                    ));
                }
            } else if let Some(&owner) = self.sample_names.get(&f.name) {
                // A new family must not take a name that is a sample of
                // another (a gauge `x_count` after summary `x`).
                return Err(format!(
                    "metric {} clashes with the samples of metric {} in {}",
                    f.name,
                    self.families[owner].name,
                    self.sources[owner].join(", ")
                ));
            }
            for s in &f.samples {
                if let Some(&owner) = self.sample_names.get(&s.name)
                    && self.families[owner].name != f.name
                {
                    return Err(format!(
                        "sample {} of metric {} clashes with metric {} in {}",
                        s.name,
                        f.name,
                        self.families[owner].name,
                        self.sources[owner].join(", ")
                    ));
                }
            }
            if let Some(i) = existing {
                let known = self.series[i].get_or_insert_with(|| {
                    self.families[i].samples.iter().map(series_key).collect()
                });
                let mut keys = Vec::with_capacity(f.samples.len());
                for s in &f.samples {
                    let key = series_key(s);
                    if known.contains(&key) {
                        return Err(format!(
                            "series {} is also in {}",
                            series_text(&key),
                            self.sources[i].join(", ")
                        ));
                    }
                    keys.push(key);
                }
                new_keys.push((i, keys));
            }
        }

        for (i, keys) in new_keys {
            if let Some(known) = &mut self.series[i] {
                known.extend(keys);
            }
        }
        for f in families {
            let i = match self.by_name.get(&f.name) {
                Some(&i) => i,
                None => {
                    self.families
                        .push(Family::new(f.name.clone(), String::new(), f.kind));
                    self.explicit_help.push(false);
                    self.sources.push(Vec::new());
                    self.series.push(None);
                    self.by_name.insert(f.name.clone(), self.families.len() - 1);
                    self.families.len() - 1
                }
            };
            if !f.help.is_empty() && !self.explicit_help[i] {
                self.families[i].help = f.help;
                self.explicit_help[i] = true;
            }
            if self.sources[i].last().map(String::as_str) != Some(file) {
                self.sources[i].push(file.to_string());
            }
            for s in &f.samples {
                if !self.sample_names.contains_key(&s.name) {
                    self.sample_names.insert(s.name.clone(), i);
                }
            }
            self.families[i].samples.extend(f.samples);
        }
        Ok(())
    }

    fn finish(self) -> Vec<Family> {
        let Merged {
            mut families,
            explicit_help,
            sources,
            ..
        } = self;
        for ((f, explicit), files) in families.iter_mut().zip(explicit_help).zip(sources) {
            if !explicit {
                f.help = format!("Metric read from {}", files.join(", "));
            }
        }
        families
    }
}

fn series_key(s: &crate::exposition::Sample) -> SeriesKey {
    let mut labels = s.labels.clone();
    labels.sort();
    (s.name.clone(), labels)
}

fn series_text((name, labels): &SeriesKey) -> String {
    if labels.is_empty() {
        return name.clone();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::MetricType;

    fn kind_of(fams: &[Family], name: &str) -> Option<MetricType> {
        fams.iter().find(|f| f.name == name).map(|f| f.kind)
    }

    fn collector(dir: &Path) -> Textfile {
        Textfile {
            directory: Some(dir.to_string_lossy().into_owned()),
            max_file_bytes: MAX_FILE_BYTES,
        }
    }

    fn value(fams: &[Family], name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        fams.iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.samples.iter().map(|s| (s.labels.clone(), s.value)))
            .collect()
    }

    fn scrape_error(fams: &[Family]) -> f64 {
        value(fams, "node_textfile_scrape_error")[0].1
    }

    fn mtime_files(fams: &[Family]) -> Vec<String> {
        value(fams, "node_textfile_mtime_seconds")
            .into_iter()
            .map(|(l, _)| l[0].1.clone())
            .collect()
    }

    #[test]
    fn reads_prom_files_and_reports_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("a.prom"),
            "# HELP job_ok Whether the job worked.\n# TYPE job_ok gauge\njob_ok{job=\"a\"} 1\n",
        )
        .unwrap();
        std::fs::write(
            d.join("b.prom"),
            "# TYPE job_ok gauge\njob_ok{job=\"b\"} 0\nplain 3\n",
        )
        .unwrap();
        std::fs::write(d.join("c.prom.tmp"), "garbage").unwrap();
        std::fs::write(d.join("notes.txt"), "garbage").unwrap();
        let fams = collector(d).collect().unwrap();
        assert_eq!(scrape_error(&fams), 0.0);
        let job = fams.iter().find(|f| f.name == "job_ok").unwrap();
        assert_eq!(job.kind, MetricType::Gauge);
        assert_eq!(job.help, "Whether the job worked.");
        assert_eq!(job.samples.len(), 2);
        let plain = fams.iter().find(|f| f.name == "plain").unwrap();
        assert_eq!(plain.kind, MetricType::Untyped);
        assert_eq!(
            plain.help,
            format!("Metric read from {}", d.join("b.prom").display())
        );
        assert_eq!(
            mtime_files(&fams),
            [
                d.join("a.prom").display().to_string(),
                d.join("b.prom").display().to_string()
            ]
        );
        let mtime = value(&fams, "node_textfile_mtime_seconds")[0].1;
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(mtime > now - 600.0 && mtime <= now + 1.0, "{mtime}");
        assert_eq!(mtime.fract(), 0.0);
    }

    #[test]
    fn broken_files_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("good.prom"), "good 1\n").unwrap();
        std::fs::write(d.join("bad.prom"), "ok 1\nbad{9x=\"1\"} 1\n").unwrap();
        std::fs::write(d.join("stamped.prom"), "stamped 1 1700000000000\n").unwrap();
        std::fs::write(d.join("noeol.prom"), "noeol 1").unwrap();
        std::fs::write(d.join("binary.prom"), b"x 1\n\xff\xfe\n").unwrap();
        std::fs::create_dir(d.join("dir.prom")).unwrap();
        let fams = collector(d).collect().unwrap();
        assert_eq!(scrape_error(&fams), 1.0);
        assert!(fams.iter().any(|f| f.name == "good"));
        for gone in ["ok", "bad", "stamped", "noeol", "x"] {
            assert!(!fams.iter().any(|f| f.name == gone), "{gone}");
        }
        assert_eq!(
            mtime_files(&fams),
            [d.join("good.prom").display().to_string()]
        );
        // The errors say what and where.
        assert_eq!(
            read_file(&d.join("bad.prom"), MAX_FILE_BYTES).unwrap_err(),
            "line 2: invalid label name \"9x\""
        );
        assert_eq!(
            read_file(&d.join("stamped.prom"), MAX_FILE_BYTES).unwrap_err(),
            "line 1: contains unsupported client-side timestamps, skipping entire file"
        );
        assert_eq!(
            read_file(&d.join("binary.prom"), MAX_FILE_BYTES).unwrap_err(),
            "line 2: invalid UTF-8"
        );
        assert_eq!(
            read_file(&d.join("dir.prom"), MAX_FILE_BYTES).unwrap_err(),
            "not a regular file"
        );
    }

    #[test]
    fn families_merge_across_files_unless_they_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("1.prom"), "# TYPE m gauge\nm{f=\"1\"} 1\nu 1\n").unwrap();
        std::fs::write(
            d.join("2.prom"),
            "# HELP m Shared.\n# TYPE m gauge\nm{f=\"2\"} 2\nu{f=\"2\"} 2\n",
        )
        .unwrap();
        // Same family as a counter: this whole file is an error.
        std::fs::write(
            d.join("3.prom"),
            "# TYPE m counter\nm{f=\"3\"} 3\nother3 1\n",
        )
        .unwrap();
        // A series already given by 1.prom.
        std::fs::write(d.join("4.prom"), "# TYPE m gauge\nm{f=\"1\"} 4\nother4 1\n").unwrap();
        // A different HELP for m.
        std::fs::write(
            d.join("5.prom"),
            "# HELP m Different.\n# TYPE m gauge\nm{f=\"5\"} 5\n",
        )
        .unwrap();
        // A summary whose _count would clash with family u_count below.
        std::fs::write(d.join("6.prom"), "u_count 1\n").unwrap();
        std::fs::write(d.join("7.prom"), "# TYPE u summary\nu_count{g=\"1\"} 1\n").unwrap();
        let fams = collector(d).collect().unwrap();
        assert_eq!(scrape_error(&fams), 1.0);
        let m = fams.iter().find(|f| f.name == "m").unwrap();
        assert_eq!(m.kind, MetricType::Gauge);
        assert_eq!(m.help, "Shared.");
        let vals: Vec<f64> = m.samples.iter().map(|s| s.value).collect();
        assert_eq!(vals, [1.0, 2.0]);
        let u = fams.iter().find(|f| f.name == "u").unwrap();
        assert_eq!(
            u.help,
            format!(
                "Metric read from {}, {}",
                d.join("1.prom").display(),
                d.join("2.prom").display()
            )
        );
        assert_eq!(kind_of(&fams, "u_count"), Some(MetricType::Untyped));
        assert!(kind_of(&fams, "other3").is_none() && kind_of(&fams, "other4").is_none());
        let ok: Vec<String> = ["1", "2", "6"]
            .iter()
            .map(|n| d.join(format!("{n}.prom")).display().to_string())
            .collect();
        assert_eq!(mtime_files(&fams), ok);

        let mut m = Merged::default();
        m.add(
            "a",
            crate::exposition::parse_text("# TYPE m gauge\nm 1\n").unwrap(),
        )
        .unwrap();
        assert_eq!(
            m.add(
                "b",
                crate::exposition::parse_text("# TYPE m counter\nm 1\n").unwrap()
            )
            .unwrap_err(),
            "metric m has type counter here but gauge in a"
        );
        assert_eq!(
            m.add("c", crate::exposition::parse_text("m 1\n").unwrap())
                .unwrap_err(),
            "metric m has type untyped here but gauge in a"
        );
        assert_eq!(
            m.add(
                "d",
                crate::exposition::parse_text("# TYPE m gauge\nm 2\n").unwrap()
            )
            .unwrap_err(),
            "series m is also in a"
        );
    }

    #[test]
    fn no_directory_means_only_the_error_metric() {
        let c = Textfile {
            directory: None,
            max_file_bytes: MAX_FILE_BYTES,
        };
        let fams = c.collect().unwrap();
        assert_eq!(fams.len(), 1);
        assert_eq!(scrape_error(&fams), 0.0);
        // A directory that does not exist is an error, as in node_exporter.
        let fams = collector(Path::new("/nonexistent/imd-textfile"))
            .collect()
            .unwrap();
        assert_eq!(scrape_error(&fams), 1.0);
    }

    #[test]
    fn globs_match_several_directories() {
        let dir = tempfile::tempdir().unwrap();
        for (sub, metric) in [("one", "m1"), ("two", "m2")] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join("x.prom"), format!("{metric} 1\n")).unwrap();
        }
        let c = Textfile {
            directory: Some(format!("{}/*", dir.path().display())),
            max_file_bytes: MAX_FILE_BYTES,
        };
        let fams = c.collect().unwrap();
        assert_eq!(scrape_error(&fams), 0.0);
        assert!(kind_of(&fams, "m1").is_some() && kind_of(&fams, "m2").is_some());
        assert_eq!(mtime_files(&fams).len(), 2);
    }

    #[test]
    fn files_above_the_size_limit_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.prom"), "big 1\n".repeat(100)).unwrap();
        std::fs::write(dir.path().join("small.prom"), "small 1\n").unwrap();
        let c = Textfile {
            directory: Some(dir.path().to_string_lossy().into_owned()),
            max_file_bytes: 100,
        };
        let fams = c.collect().unwrap();
        assert_eq!(scrape_error(&fams), 1.0);
        assert!(kind_of(&fams, "small").is_some() && kind_of(&fams, "big").is_none());
        assert_eq!(
            read_file(&dir.path().join("big.prom"), 100).unwrap_err(),
            "file is 600 bytes, more than the limit of 100"
        );
    }

    #[test]
    fn thousands_of_files_stay_fast() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3000 {
            let text = format!(
                "# HELP shared_metric Shared.\n# TYPE shared_metric gauge\nshared_metric{{file=\"{i}\"}} {i}\nown_{i} 1\n"
            );
            std::fs::write(dir.path().join(format!("f{i:05}.prom")), text).unwrap();
        }
        let start = std::time::Instant::now();
        let fams = collector(dir.path()).collect().unwrap();
        let took = start.elapsed();
        assert_eq!(scrape_error(&fams), 0.0);
        let shared = fams.iter().find(|f| f.name == "shared_metric").unwrap();
        assert_eq!(shared.samples.len(), 3000);
        assert_eq!(fams.len(), 3000 + 3);
        // Linear work: well under a second even in a debug build.
        assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn directory_comes_from_the_flag_or_the_config() {
        let cmd = crate::cli::add_collector_flags(clap::Command::new("t"));
        let config: crate::config::Config =
            crate::config::parse_yaml(Path::new("x.yml"), "textfile:\n  directory: /from/config\n")
                .unwrap();
        let paths = crate::paths::Paths::default();
        for (args, want) in [
            (vec!["t"], Some("/from/config")),
            (
                vec!["t", "--collector.textfile.directory=/from/flag"],
                Some("/from/flag"),
            ),
        ] {
            let matches = cmd.clone().try_get_matches_from(args).unwrap();
            let ctx = BuildContext {
                paths: &paths,
                matches: &matches,
                config: &config,
                state_dir: None,
            };
            assert_eq!(directory_of(&ctx).as_deref(), want);
        }
        let matches = cmd.try_get_matches_from(["t"]).unwrap();
        let empty = crate::config::Config::default();
        let ctx = BuildContext {
            paths: &paths,
            matches: &matches,
            config: &empty,
            state_dir: None,
        };
        assert_eq!(directory_of(&ctx), None);
        // A textfile section switches the collector on even with
        // --collector.disable-defaults.
        assert!((SPEC.configured)(&config));
        assert!(!(SPEC.configured)(&empty));
    }
}
