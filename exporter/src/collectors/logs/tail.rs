//! Reading one open log file: its identity, the position reached, and the
//! splitting of what was read into bounded lines.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// Lines longer than this are cut to it for matching (and counted), so that a
/// huge or binary "line" never holds much memory.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// A file's identity: rotation puts another file (another inode) at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Splits a byte stream on `\n` into lines of at most [`MAX_LINE`] bytes,
/// keeping an unterminated last line until its newline arrives.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    /// The kept beginning of the unfinished line (at most `MAX_LINE` bytes).
    pending: Vec<u8>,
    /// Bytes of the unfinished line seen so far, including those cut off.
    partial_len: u64,
}

impl LineSplitter {
    /// Bytes of the unfinished line read so far.
    pub fn partial_len(&self) -> u64 {
        self.partial_len
    }

    /// Forgets the unfinished line (the file was truncated).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.partial_len = 0;
    }

    /// Feeds bytes; calls `on_line(line, was_cut)` for every finished line,
    /// without its `\n` or `\r\n`.
    pub fn feed(&mut self, mut data: &[u8], on_line: &mut dyn FnMut(&[u8], bool)) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            let (piece, rest) = (&data[..i], &data[i + 1..]);
            if self.partial_len == 0 {
                // The whole line is in this buffer: no copy.
                let cut = piece.len() > MAX_LINE;
                on_line(strip_cr(&piece[..piece.len().min(MAX_LINE)]), cut);
            } else {
                self.keep(piece);
                let cut = self.partial_len > MAX_LINE as u64;
                on_line(strip_cr(&self.pending), cut);
                self.reset();
            }
            data = rest;
        }
        self.keep(data);
    }

    /// Ends the unfinished line as if a newline followed (the file will not
    /// grow any more).
    pub fn flush(&mut self, on_line: &mut dyn FnMut(&[u8], bool)) {
        if self.partial_len > 0 {
            let cut = self.partial_len > MAX_LINE as u64;
            on_line(strip_cr(&self.pending), cut);
            self.reset();
        }
    }

    fn keep(&mut self, piece: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.pending.len());
        self.pending
            .extend_from_slice(&piece[..piece.len().min(room)]);
        self.partial_len += piece.len() as u64;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// An open log file and how far it has been read.
pub(crate) struct Tail {
    /// The file's identity when opened.
    pub id: FileId,
    file: File,
    /// Next byte to read.
    pos: u64,
    /// Lines of what was read.
    pub splitter: LineSplitter,
}

impl Tail {
    /// Opens a regular file for reading from its beginning; returns it with
    /// its current size.
    pub fn open(path: &Path) -> io::Result<(Tail, u64)> {
        // Non-blocking open: the poller checked the type, but a FIFO put in
        // the file's place since must not block the scrape in open(2).
        let file = crate::collectors::util::open_regular(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let tail = Tail {
            id: FileId::of(&meta),
            file,
            pos: 0,
            splitter: LineSplitter::default(),
        };
        Ok((tail, meta.len()))
    }

    /// Sets where reading starts.
    pub fn seek(&mut self, pos: u64) {
        self.pos = pos;
        self.splitter.reset();
    }

    /// The offset up to which every line has been handed out: where a
    /// restart resumes.
    pub fn committed(&self) -> u64 {
        self.pos.saturating_sub(self.splitter.partial_len())
    }

    /// The bytes read so far.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The file's current size.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Reads the next bytes into `buf`; 0 at the end of the file.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, self.pos) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Where the last line of the first `size` bytes begins: after the last
    /// newline within the final [`MAX_LINE`] bytes, so that starting "at the
    /// end" still reads a line being written whole. `size` when no newline is
    /// found that close to the end.
    pub fn last_line_start(&self, size: u64) -> io::Result<u64> {
        let from = size.saturating_sub(MAX_LINE as u64);
        let mut buf = vec![0; (size - from) as usize];
        let mut got = 0;
        while got < buf.len() {
            match self.file.read_at(&mut buf[got..], from + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(match buf[..got].iter().rposition(|&b| b == b'\n') {
            Some(i) => from + i as u64 + 1,
            None if from == 0 => 0,
            None => size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> (Vec<(String, bool)>, u64) {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |l, cut| {
                out.push((String::from_utf8_lossy(l).into_owned(), cut))
            });
        }
        (out, s.partial_len())
    }

    #[test]
    fn splits_on_newlines_across_chunks() {
        let (lines, partial) = split(&[b"a\r\nb", b"c\n\nd", b"ef"]);
        assert_eq!(
            lines,
            [
                ("a".into(), false),
                ("bc".into(), false),
                ("".into(), false)
            ]
        );
        assert_eq!(partial, 3);
    }

    #[test]
    fn long_and_binary_lines_are_cut_not_kept() {
        let long = vec![b'x'; MAX_LINE * 3];
        let (lines, partial) = split(&[&long, b"\n", &long[..10], b"\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0.len(), MAX_LINE);
        assert!(lines[0].1);
        assert_eq!(lines[1], ("x".repeat(10), false));
        assert_eq!(partial, 0);
        // A long line within one buffer is cut too.
        let mut one = long.clone();
        one.push(b'\n');
        let (lines, _) = split(&[&one]);
        assert_eq!((lines[0].0.len(), lines[0].1), (MAX_LINE, true));
        // Binary garbage becomes replacement characters.
        let (lines, _) = split(&[&[0xff, 0xfe, 0, b'a', b'\n']]);
        assert_eq!(lines[0].0, "\u{fffd}\u{fffd}\0a");
        // The kept part of an unfinished long line stays bounded.
        let mut s = LineSplitter::default();
        for _ in 0..10 {
            s.feed(&long, &mut |_, _| panic!("no line yet"));
        }
        assert_eq!(s.pending.len(), MAX_LINE);
        assert_eq!(s.partial_len(), 30 * MAX_LINE as u64);
    }

    #[test]
    fn end_start_backs_up_to_the_unfinished_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one\ntwo\nthr").unwrap();
        let (t, size) = Tail::open(&p).unwrap();
        assert_eq!(t.last_line_start(size).unwrap(), 8);
        std::fs::write(&p, "one\ntwo\n").unwrap();
        assert_eq!(t.last_line_start(8).unwrap(), 8);
        std::fs::write(&p, "partial").unwrap();
        assert_eq!(t.last_line_start(7).unwrap(), 0);
        assert!(Tail::open(dir.path()).is_err());
    }
}
