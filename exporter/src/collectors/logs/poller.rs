//! The background reader: each poll finds the configured files, follows
//! rotation and truncation, reads new lines through the rules, and keeps the
//! offsets for the next start.
//!
//! Open files are followed by identity (device and inode), not by path: a
//! file renamed away by rotation is read to its end (and once more a poll
//! later, for writers that reopen late) before being closed, while the new
//! file at the path is read from its beginning; with a glob that also
//! matches the rotated name the same file simply keeps its reader, so no line
//! is counted twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::config::StartFrom;
use super::offsets::{self, Saved};
use super::rules::{Entry, Matcher, Store};
use super::tail::{FileId, LineSplitter, Tail};
use crate::paths::Paths;

/// At most this many bytes are read from one file in one poll, so that a
/// large backlog is worked off over several polls instead of stalling the
/// others.
const READ_BUDGET: u64 = 64 << 20;
/// Size of the read buffer.
const CHUNK: usize = 64 * 1024;
/// Offsets are written at most this often while running (and at shutdown).
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(5);
/// A rotated-away file is closed once it has been idle for this many polls.
const ORPHAN_POLLS: u32 = 2;

/// Reads the configured files; owned by the background thread (or a test).
pub(crate) struct Poller {
    entries: Vec<Entry>,
    paths: Paths,
    store: Arc<Mutex<Store>>,
    readers: Vec<Reader>,
    state_file: Option<PathBuf>,
    /// Saved offsets of paths not opened yet in this run.
    unresolved: BTreeMap<String, Saved>,
    last_saved: BTreeMap<String, Saved>,
    last_save: Option<Instant>,
    save_failed: bool,
    /// The file last seen at each path, to count rotations.
    path_ids: HashMap<String, FileId>,
    /// The last problem logged for each path, so that it is logged once.
    problems: HashMap<String, String>,
    /// Whether the first poll (start-up) is done.
    started: bool,
    buf: Vec<u8>,
}

struct Reader {
    tail: Tail,
    /// Where the file was last seen (host view); the `path` label.
    path: String,
    /// The entries whose path or pattern matched it.
    entries: Vec<usize>,
    /// Polls since the file was last seen at a watched path (0: it is).
    orphan_polls: u32,
}

/// A regular file found at a watched path.
struct Found {
    path: String,
    real: PathBuf,
    id: FileId,
    entries: Vec<usize>,
}

struct Outcome {
    bytes: u64,
    eof: bool,
    error: bool,
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// Logs a path's problem when it differs from the last one logged.
fn note_problem(problems: &mut HashMap<String, String>, path: &str, message: String) {
    if problems.get(path) != Some(&message) {
        tracing::warn!(path, problem = %message, "log file");
        problems.insert(path.to_string(), message);
    }
}

fn clear_problem(problems: &mut HashMap<String, String>, path: &str) {
    if problems.remove(path).is_some() {
        tracing::info!(path, "log file readable again");
    }
}

impl Poller {
    /// A poller over compiled entries, updating `store`, with offsets kept
    /// in `state_dir` when given.
    pub fn new(
        entries: Vec<Entry>,
        store: Arc<Mutex<Store>>,
        paths: Paths,
        state_dir: Option<&Path>,
    ) -> Poller {
        {
            let mut s = lock(&store);
            for e in entries.iter().filter(|e| !e.is_glob) {
                s.file(&e.path);
            }
        }
        let state_file = state_dir.map(|d| d.join(offsets::FILE_NAME));
        let loaded = state_file.as_deref().map(offsets::load).unwrap_or_default();
        let patterns: Vec<Option<glob::Pattern>> = entries
            .iter()
            .map(|e| {
                if e.is_glob {
                    glob::Pattern::new(&e.path).ok()
                } else {
                    None
                }
            })
            .collect();
        // Offsets of paths no longer configured are forgotten.
        let unresolved: BTreeMap<String, Saved> = loaded
            .iter()
            .filter(|(p, _)| {
                entries.iter().zip(&patterns).any(|(e, pat)| match pat {
                    Some(pat) => pat.matches(p),
                    None => e.path == **p,
                })
            })
            .map(|(p, s)| (p.clone(), *s))
            .collect();
        let path_ids = unresolved
            .iter()
            .map(|(p, s)| (p.clone(), s.id()))
            .collect();
        Poller {
            entries,
            paths,
            store,
            readers: Vec::new(),
            state_file,
            unresolved,
            last_saved: loaded,
            last_save: None,
            save_failed: false,
            path_ids,
            problems: HashMap::new(),
            started: false,
            buf: vec![0; CHUNK],
        }
    }

    /// One round: find the files, notice rotations and truncations, and
    /// read every new line through the rules.
    pub fn poll_once(&mut self) {
        self.poll(READ_BUDGET);
    }

    /// The start-up round without reading: opens the files present and sets
    /// where each will be read from (its saved offset, or `from`), so that
    /// "the end" is the end at start-up.
    pub fn prime(&mut self) {
        self.poll(0);
    }

    fn poll(&mut self, budget: u64) {
        let found = self.scan();

        for r in &mut self.readers {
            match found.iter().find(|f| f.id == r.tail.id) {
                Some(f) => {
                    r.path.clone_from(&f.path);
                    r.entries.clone_from(&f.entries);
                    r.orphan_polls = 0;
                }
                None => r.orphan_polls += 1,
            }
        }
        {
            let mut store = lock(&self.store);
            for f in &found {
                if let Some(old) = self.path_ids.insert(f.path.clone(), f.id)
                    && old != f.id
                {
                    store.file(&f.path).rotations += 1;
                }
            }
        }

        // Files no longer at a watched path (rotated away or deleted) are
        // read to their end first, so that their last lines come before
        // the new file's.
        let mut blocked: HashSet<String> = HashSet::new();
        let mut i = 0;
        while i < self.readers.len() {
            if self.readers[i].orphan_polls == 0 {
                i += 1;
                continue;
            }
            let out = drain(
                &mut self.readers[i],
                &self.entries,
                &self.store,
                &mut self.buf,
                &mut self.problems,
                budget,
            );
            let r = &self.readers[i];
            if out.error || (out.eof && out.bytes == 0 && r.orphan_polls >= ORPHAN_POLLS) {
                let mut r = self.readers.remove(i);
                let mut store = lock(&self.store);
                apply(&mut r, None, &self.entries, &mut store);
                continue;
            }
            if !out.eof {
                blocked.insert(r.path.clone());
            }
            i += 1;
        }

        for f in &found {
            if self.readers.iter().any(|r| r.tail.id == f.id) {
                continue;
            }
            match Tail::open(&f.real) {
                Ok((mut tail, size)) => {
                    if self.readers.iter().any(|r| r.tail.id == tail.id) {
                        continue; // replaced between the scan and the open
                    }
                    let start = self.start_offset(f, &tail, size);
                    tail.seek(start);
                    clear_problem(&mut self.problems, &f.path);
                    self.readers.push(Reader {
                        tail,
                        path: f.path.clone(),
                        entries: f.entries.clone(),
                        orphan_polls: 0,
                    });
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        lock(&self.store).file(&f.path).read_errors += 1;
                        note_problem(&mut self.problems, &f.path, format!("cannot open: {e}"));
                    }
                }
            }
        }

        for r in self.readers.iter_mut().filter(|r| r.orphan_polls == 0) {
            if blocked.contains(&r.path) {
                continue;
            }
            match r.tail.size() {
                Ok(size) if size < r.tail.pos() => {
                    tracing::info!(path = %r.path, "log file truncated; reading it from the beginning");
                    lock(&self.store).file(&r.path).rotations += 1;
                    r.tail.seek(0);
                }
                Ok(_) => {}
                Err(e) => {
                    lock(&self.store).file(&r.path).read_errors += 1;
                    note_problem(&mut self.problems, &r.path, format!("cannot stat: {e}"));
                    continue;
                }
            }
            drain(
                r,
                &self.entries,
                &self.store,
                &mut self.buf,
                &mut self.problems,
                budget,
            );
        }

        // Whether each path is readable; forget glob matches that are gone.
        let mut store = lock(&self.store);
        for f in &found {
            store.file(&f.path);
        }
        let literal: HashSet<&str> = self
            .entries
            .iter()
            .filter(|e| !e.is_glob)
            .map(|e| e.path.as_str())
            .collect();
        let readers = &self.readers;
        store.files.retain(|path, _| {
            literal.contains(path.as_str())
                || found.iter().any(|f| f.path == *path)
                || readers.iter().any(|r| r.path == *path)
        });
        for (path, stats) in store.files.iter_mut() {
            stats.up = readers
                .iter()
                .any(|r| r.orphan_polls == 0 && r.path == *path);
        }
        let files = &store.files;
        self.path_ids
            .retain(|p, _| literal.contains(p.as_str()) || files.contains_key(p));
        self.started = true;
    }

    /// The files at the watched paths now, one per file, each with every
    /// entry that matched it.
    fn scan(&mut self) -> Vec<Found> {
        let mut found: Vec<Found> = Vec::new();
        for (ei, entry) in self.entries.iter().enumerate() {
            let candidates: Vec<(String, PathBuf)> = if entry.is_glob {
                expand(&self.paths, &entry.path)
            } else {
                vec![(entry.path.clone(), self.paths.root(&entry.path))]
            };
            for (path, real) in candidates {
                match std::fs::metadata(&real) {
                    Ok(m) if m.is_file() => {
                        let id = FileId::of(&m);
                        match found.iter_mut().find(|f| f.id == id) {
                            Some(f) if f.entries.contains(&ei) => {}
                            Some(f) => f.entries.push(ei),
                            None => found.push(Found {
                                path,
                                real,
                                id,
                                entries: vec![ei],
                            }),
                        }
                    }
                    Ok(_) => {
                        if !entry.is_glob {
                            note_problem(&mut self.problems, &path, "not a regular file".into());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        note_problem(&mut self.problems, &path, "does not exist (yet)".into());
                    }
                    Err(e) => {
                        lock(&self.store).file(&path).read_errors += 1;
                        note_problem(&mut self.problems, &path, format!("cannot stat: {e}"));
                    }
                }
            }
        }
        found
    }

    /// Where reading of a newly opened file starts: its saved offset when it
    /// is the same file and not shorter (else its beginning: it was rotated
    /// or truncated while the exporter was stopped); at start-up the entry's
    /// `from`; later the beginning (the file is new).
    fn start_offset(&mut self, f: &Found, tail: &Tail, size: u64) -> u64 {
        if let Some(saved) = self.unresolved.remove(&f.path) {
            if saved.id() == tail.id && saved.offset <= size {
                return saved.offset;
            }
            tracing::info!(path = %f.path, "log file rotated or truncated while stopped; reading it from the beginning");
            return 0;
        }
        if self.started {
            return 0;
        }
        match self.entries[f.entries[0]].from {
            StartFrom::Beginning => 0,
            StartFrom::End => tail.last_line_start(size).unwrap_or(size),
        }
    }

    /// The offsets to keep: every open file at its path, and saved offsets
    /// of paths not opened yet.
    fn state(&self) -> BTreeMap<String, Saved> {
        let mut m = self.unresolved.clone();
        for r in self.readers.iter().filter(|r| r.orphan_polls == 0) {
            m.insert(
                r.path.clone(),
                Saved {
                    dev: r.tail.id.dev,
                    ino: r.tail.id.ino,
                    offset: r.tail.committed(),
                },
            );
        }
        m
    }

    /// Writes the offsets if they changed and the last write is
    /// [`SAVE_EVERY`] old.
    pub fn save_if_due(&mut self) {
        if self.last_save.is_none_or(|t| t.elapsed() >= SAVE_EVERY) {
            self.save_now();
        }
    }

    /// Writes the offsets now if they changed since the last write.
    pub fn save_now(&mut self) {
        let Some(file) = &self.state_file else {
            return;
        };
        let state = self.state();
        if state == self.last_saved {
            return;
        }
        self.last_save = Some(Instant::now());
        match offsets::save(file, &state) {
            Ok(()) => {
                if self.save_failed {
                    tracing::info!(file = %file.display(), "log offsets saved again");
                    self.save_failed = false;
                }
                self.last_saved = state;
            }
            Err(e) => {
                if !self.save_failed {
                    tracing::warn!(file = %file.display(), error = %e, "cannot save log offsets");
                    self.save_failed = true;
                }
            }
        }
    }
}

/// The regular files a glob pattern (host view) matches under the root file
/// system, as (host path, real path).
fn expand(paths: &Paths, pattern: &str) -> Vec<(String, PathBuf)> {
    let root = paths.rootfs.to_string_lossy();
    let root = root.trim_end_matches('/');
    let full = format!("{}{pattern}", glob::Pattern::escape(root));
    let Ok(matches) = glob::glob(&full) else {
        return Vec::new();
    };
    matches
        .filter_map(Result::ok)
        .map(|real| (paths.host_view(&real).to_string_lossy().into_owned(), real))
        .collect()
}

/// Reads a file from its position to its end or at most `budget` bytes.
fn drain(
    r: &mut Reader,
    entries: &[Entry],
    store: &Mutex<Store>,
    buf: &mut [u8],
    problems: &mut HashMap<String, String>,
    budget: u64,
) -> Outcome {
    let mut bytes = 0;
    loop {
        if bytes >= budget {
            return Outcome {
                bytes,
                eof: false,
                error: false,
            };
        }
        let n = match r.tail.read(buf) {
            Ok(0) => {
                return Outcome {
                    bytes,
                    eof: true,
                    error: false,
                };
            }
            Ok(n) => n,
            Err(e) => {
                lock(store).file(&r.path).read_errors += 1;
                note_problem(problems, &r.path, format!("cannot read: {e}"));
                return Outcome {
                    bytes,
                    eof: false,
                    error: true,
                };
            }
        };
        bytes += n as u64;
        let mut store = lock(store);
        store.file(&r.path).bytes += n as u64;
        apply(r, Some(&buf[..n]), entries, &mut store);
    }
}

/// Feeds bytes (or, with `None`, the end of the file) to a reader's line
/// splitter and every finished line to the rules of its entries.
fn apply(r: &mut Reader, data: Option<&[u8]>, entries: &[Entry], store: &mut Store) {
    let rules = r.entries.iter().map(|&e| &entries[e].matcher);
    feed_lines(&mut r.tail.splitter, data, rules, &r.path, store);
}

/// Feeds bytes (or, with `None`, the end of the file at `path`) to
/// `splitter` and every finished line to `rules`, counting the lines in
/// the file's statistics.
pub(crate) fn feed_lines<'a>(
    splitter: &mut LineSplitter,
    data: Option<&[u8]>,
    rules: impl Iterator<Item = &'a Matcher> + Clone,
    path: &str,
    store: &mut Store,
) {
    let (mut lines, mut cut) = (0u64, 0u64);
    let mut on_line = |line: &[u8], was_cut: bool| {
        lines += 1;
        cut += u64::from(was_cut);
        let text = String::from_utf8_lossy(line);
        for m in rules.clone() {
            m.apply(&text, store);
        }
    };
    match data {
        Some(d) => splitter.feed(d, &mut on_line),
        None => splitter.flush(&mut on_line),
    }
    let stats = store.file(path);
    stats.lines += lines;
    stats.truncated_lines += cut;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::logs::rules::compile;
    use crate::collectors::logs::tail::MAX_LINE;
    use crate::config::{Config, parse_yaml};
    use std::io::Write;

    /// A temp dir with a log directory, a state directory and a poller over
    /// the rules below for `files` (paths relative to the log directory).
    struct Fixture {
        dir: tempfile::TempDir,
        store: Arc<Mutex<Store>>,
        poller: Poller,
        yaml: String,
    }

    const RULES: &str = "      rules:\n        - {name: e_total, regex: '^E'}\n        - {name: w_total, regex: '^W (?P<who>\\w+)', labels: [who]}\n";

    impl Fixture {
        fn new(files: &[(&str, &str)]) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("log")).unwrap();
            let mut yaml = "logs:\n  files:\n".to_string();
            for (p, from) in files {
                let full = dir.path().join("log").join(p);
                yaml += &format!(
                    "    - path: '{}'\n      from: {from}\n{RULES}",
                    full.display()
                );
            }
            let (store, poller) = Self::poller(&yaml, dir.path(), Paths::default());
            Fixture {
                dir,
                store,
                poller,
                yaml,
            }
        }

        fn poller(yaml: &str, dir: &Path, paths: Paths) -> (Arc<Mutex<Store>>, Poller) {
            let c: Config = parse_yaml(Path::new("x.yml"), yaml).unwrap();
            let compiled = compile(&c.logs.unwrap()).unwrap();
            let store = Arc::new(Mutex::new(compiled.store));
            let poller = Poller::new(
                compiled.entries,
                store.clone(),
                paths,
                Some(&dir.join("state")),
            );
            (store, poller)
        }

        /// Saves and starts over with a fresh poller and fresh metrics, as a
        /// restarted exporter does.
        fn restart(&mut self) {
            self.poller.save_now();
            let (store, poller) = Self::poller(&self.yaml, self.dir.path(), Paths::default());
            self.store = store;
            self.poller = poller;
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join("log").join(name)
        }

        fn label(&self, name: &str) -> String {
            self.path(name).display().to_string()
        }

        fn append(&self, name: &str, text: &[u8]) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(name))
                .unwrap();
            f.write_all(text).unwrap();
        }

        fn poll(&mut self) {
            self.poller.poll_once();
        }

        /// The value of a sample by family name and label values.
        fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let fams = lock(&self.store).snapshot();
            fams.iter()
                .filter(|f| f.name == name)
                .flat_map(|f| &f.samples)
                .find_map(|s| {
                    let want: Vec<(String, String)> = labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    (s.labels == want).then_some(s.value)
                })
        }

        fn errors(&self) -> f64 {
            self.value("e_total", &[]).unwrap()
        }

        fn stat(&self, name: &str, file: &str) -> f64 {
            let label = self.label(file);
            self.value(name, &[("path", &label)]).unwrap_or(-1.0)
        }
    }

    #[test]
    fn counts_lines_and_waits_for_unfinished_ones() {
        let mut f = Fixture::new(&[("a.log", "beginning")]);
        f.append("a.log", b"E one\nW bob x\nW bob y\nW amy\nE tw");
        f.poll();
        assert_eq!(f.errors(), 1.0);
        assert_eq!(f.value("w_total", &[("who", "bob")]), Some(2.0));
        assert_eq!(f.value("w_total", &[("who", "amy")]), Some(1.0));
        f.append("a.log", b"o\r\n");
        f.poll();
        assert_eq!(f.errors(), 2.0);
        assert_eq!(f.stat("imd_log_lines_total", "a.log"), 5.0);
        assert_eq!(f.stat("imd_log_bytes_read_total", "a.log"), 35.0);
        assert_eq!(f.stat("imd_log_file_up", "a.log"), 1.0);
        assert_eq!(f.stat("imd_log_rotations_total", "a.log"), 0.0);
    }

    #[test]
    fn from_end_skips_existing_lines_but_not_an_unfinished_one() {
        let mut f = Fixture::new(&[("a.log", "end")]);
        f.append("a.log", b"E old\nE old\nE unfin");
        f.poll();
        assert_eq!(f.errors(), 0.0);
        f.append("a.log", b"ished\nE new\n");
        f.poll();
        assert_eq!(f.errors(), 2.0);
    }

    #[test]
    fn missing_file_is_reported_and_read_whole_when_it_appears() {
        let mut f = Fixture::new(&[("a.log", "end")]);
        f.poll();
        assert_eq!(f.stat("imd_log_file_up", "a.log"), 0.0);
        assert_eq!(f.stat("imd_log_lines_total", "a.log"), 0.0);
        // Appearing after start-up, the file is new: all of it counts.
        f.append("a.log", b"E 1\nE 2\n");
        f.poll();
        assert_eq!(f.stat("imd_log_file_up", "a.log"), 1.0);
        assert_eq!(f.errors(), 2.0);
        std::fs::remove_file(f.path("a.log")).unwrap();
        f.poll();
        assert_eq!(f.stat("imd_log_file_up", "a.log"), 0.0);
        assert_eq!(f.stat("imd_log_read_errors_total", "a.log"), 0.0);
    }

    #[test]
    fn rotation_by_rename_loses_no_lines() {
        let mut f = Fixture::new(&[("a.log", "beginning")]);
        f.append("a.log", b"E 1\n");
        f.poll();
        assert_eq!(f.errors(), 1.0);
        // Written just before the rename, and an unfinished last line.
        f.append("a.log", b"E 2\nE 3\nE 4");
        std::fs::rename(f.path("a.log"), f.path("a.log.1")).unwrap();
        f.append("a.log", b"E 5\n");
        f.poll();
        assert_eq!(f.errors(), 4.0, "old file's last lines, then the new file");
        assert_eq!(f.stat("imd_log_rotations_total", "a.log"), 1.0);
        // A writer that has not reopened yet still writes to the old file:
        // it is read for another poll.
        f.append("a.log.1", b"\nE 6\nE 7");
        f.poll();
        assert_eq!(f.errors(), 6.0);
        f.poll();
        // Idle, the old file is closed, its unfinished last line ended.
        assert_eq!(f.errors(), 7.0);
        f.append("a.log.1", b"E 8\n");
        f.append("a.log", b"E 9\n");
        f.poll();
        assert_eq!(f.errors(), 8.0, "the old file is closed now");
        assert_eq!(f.stat("imd_log_lines_total", "a.log"), 8.0);
    }

    #[test]
    fn rotation_with_a_gap_and_deletion() {
        let mut f = Fixture::new(&[("a.log", "beginning")]);
        f.append("a.log", b"E 1\n");
        f.poll();
        f.append("a.log", b"E 2\n");
        std::fs::remove_file(f.path("a.log")).unwrap();
        f.poll();
        assert_eq!(
            f.errors(),
            2.0,
            "a deleted file's last lines are still read"
        );
        assert_eq!(f.stat("imd_log_file_up", "a.log"), 0.0);
        f.append("a.log", b"E 3\n");
        f.poll();
        assert_eq!(f.errors(), 3.0);
        assert_eq!(f.stat("imd_log_rotations_total", "a.log"), 1.0);
    }

    #[test]
    fn copytruncate_starts_over() {
        let mut f = Fixture::new(&[("a.log", "beginning")]);
        f.append("a.log", b"E 1\nE 2\nW bob\n");
        f.poll();
        assert_eq!(f.errors(), 2.0);
        std::fs::OpenOptions::new()
            .write(true)
            .open(f.path("a.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
        f.append("a.log", b"E 3\n");
        f.poll();
        assert_eq!(f.errors(), 3.0);
        assert_eq!(f.stat("imd_log_rotations_total", "a.log"), 1.0);
    }

    #[test]
    fn restart_resumes_from_the_saved_offset() {
        let mut f = Fixture::new(&[("a.log", "beginning")]);
        f.append("a.log", b"E 1\nE 2\nE unfin");
        f.poll();
        assert_eq!(f.errors(), 2.0);
        f.restart();
        let saved = offsets::load(&f.dir.path().join("state").join(offsets::FILE_NAME));
        assert_eq!(
            saved[&f.label("a.log")].offset,
            8,
            "the unfinished line is not committed"
        );
        // Written while stopped.
        f.append("a.log", b"ished\nE 4\n");
        f.poll();
        assert_eq!(f.errors(), 2.0, "no double counting, nothing lost");
        assert_eq!(f.stat("imd_log_rotations_total", "a.log"), 0.0);
        // Without changes nothing is written again (a write renames a new
        // file into place).
        use std::os::unix::fs::MetadataExt;
        let state = f.dir.path().join("state").join(offsets::FILE_NAME);
        f.poller.save_now();
        let before = std::fs::metadata(&state).unwrap().ino();
        f.poll();
        f.poller.save_now();
        assert_eq!(before, std::fs::metadata(&state).unwrap().ino());
        f.append("a.log", b"E 5\n");
        f.poll();
        f.poller.save_now();
        assert_ne!(before, std::fs::metadata(&state).unwrap().ino());
    }

    #[test]
    fn rotation_while_stopped_reads_the_new_file_whole() {
        let mut f = Fixture::new(&[("a.log", "end")]);
        f.append("a.log", b"E old\n");
        f.poll();
        f.restart();
        std::fs::rename(f.path("a.log"), f.path("a.log.1")).unwrap();
        f.append("a.log", b"E 1\nE 2\n");
        f.poll();
        assert_eq!(
            f.errors(),
            2.0,
            "from: end does not apply to a rotated file"
        );
        assert_eq!(f.stat("imd_log_rotations_total", "a.log"), 1.0);
    }

    #[test]
    fn truncation_while_stopped_reads_from_the_beginning() {
        let mut f = Fixture::new(&[("a.log", "end")]);
        f.append("a.log", b"E 1\nE 2\nE 3\n");
        f.poll();
        f.restart();
        std::fs::write(f.path("a.log"), b"E x\n").unwrap();
        f.poll();
        assert_eq!(f.errors(), 1.0);
    }

    #[test]
    fn long_and_binary_lines_are_bounded_and_counted() {
        let mut f = Fixture::new(&[("a.log", "beginning")]);
        let long = vec![b'E'; MAX_LINE + 1000];
        f.append("a.log", &long);
        f.poll();
        assert_eq!(f.stat("imd_log_lines_total", "a.log"), 0.0);
        f.append("a.log", &long);
        f.append("a.log", b"\n\xff\xfe\x00binary\nE \xc3\x28 bad utf8\n");
        f.poll();
        assert_eq!(f.stat("imd_log_lines_total", "a.log"), 3.0);
        assert_eq!(f.stat("imd_log_truncated_lines_total", "a.log"), 1.0);
        assert_eq!(f.errors(), 2.0);
    }

    #[test]
    fn globs_follow_files_and_do_not_double_count_rotated_names() {
        let mut f = Fixture::new(&[("*.log*", "beginning")]);
        f.append("a.log", b"E a1\n");
        f.append("b.log", b"E b1\nE b2\n");
        f.poll();
        assert_eq!(f.errors(), 3.0);
        assert_eq!(f.stat("imd_log_lines_total", "b.log"), 2.0);
        // A new file is read whole; a rotated one keeps its reader.
        f.append("a.log", b"E a2\n");
        std::fs::rename(f.path("a.log"), f.path("a.log.1")).unwrap();
        f.append("a.log", b"E a3\n");
        f.append("c.log", b"E c1\n");
        f.poll();
        assert_eq!(f.errors(), 6.0);
        std::fs::remove_file(f.path("a.log.1")).unwrap();
        f.poll();
        f.poll();
        f.poll();
        // The deleted file's series go away.
        assert_eq!(f.stat("imd_log_lines_total", "a.log.1"), -1.0);
        assert_eq!(f.stat("imd_log_file_up", "c.log"), 1.0);
    }

    #[test]
    fn files_are_read_under_the_root_file_system() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/log/app")).unwrap();
        std::fs::write(dir.path().join("var/log/x.log"), "E 1\n").unwrap();
        std::fs::write(dir.path().join("var/log/app/y.log"), "E 1\nE 2\n").unwrap();
        let yaml = format!(
            "logs:\n  files:\n    - path: /var/log/x.log\n      from: beginning\n{RULES}    - path: /var/log/app/*.log\n      from: beginning\n{RULES}"
        );
        let paths = Paths {
            rootfs: dir.path().into(),
            ..Paths::default()
        };
        let (store, mut poller) = Fixture::poller(&yaml, dir.path(), paths);
        poller.poll_once();
        let fams = lock(&store).snapshot();
        let lines = fams
            .iter()
            .find(|f| f.name == "imd_log_lines_total")
            .unwrap();
        let got: Vec<(String, f64)> = lines
            .samples
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect();
        assert_eq!(
            got,
            [
                ("/var/log/app/y.log".to_string(), 2.0),
                ("/var/log/x.log".to_string(), 1.0)
            ]
        );
    }

    #[test]
    fn unreadable_state_dir_is_not_fatal() {
        let mut f = Fixture::new(&[("a.log", "beginning")]);
        std::fs::write(f.dir.path().join("state"), "a file, not a directory").unwrap();
        f.append("a.log", b"E 1\n");
        f.poll();
        f.poller.save_now();
        f.poll();
        assert_eq!(f.errors(), 1.0);
    }
}
