//! Reading and checking the commands' CSV input.
//!
//! Timestamps may be RFC 3339 (`2024-05-01T10:00:00Z`), `YYYY-MM-DD
//! HH:MM:SS` (taken as UTC), or a number: unix seconds, or a plain step
//! number (only the spacing matters to the models). Every error names the
//! file and the line.

use std::fs::File;
use std::io::{BufRead, Read};
use std::path::Path;

use crate::model::Point;

/// A bad input file: which file, which line, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct InputError {
    /// The file.
    pub file: String,
    /// The line (1-based; 0 when the file could not be read at all).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// An error at `line` of `file`.
    fn at(file: &str, line: u64, message: impl Into<String>) -> InputError {
        InputError {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

/// One row of input: its line, its timestamp as written, and its point.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Line number in the file (1-based, the header is line 1).
    pub line: u64,
    /// The timestamp as written.
    pub timestamp: String,
    /// The value as written.
    pub value: String,
    /// Parsed time (ms) and value.
    pub point: Point,
}

/// A series read from a file: its id and its rows, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The `series_id` column (empty for a single-series file).
    pub id: String,
    /// The rows.
    pub rows: Vec<Row>,
}

impl Series {
    /// The points.
    pub fn points(&self) -> Vec<Point> {
        self.rows.iter().map(|r| r.point).collect()
    }

    /// Line of the first row (for error messages).
    pub fn first_line(&self) -> u64 {
        self.rows.first().map(|r| r.line).unwrap_or(0)
    }
}

/// Parses a timestamp into milliseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty timestamp".into());
    }
    if let Ok(n) = s.parse::<i64>() {
        return n
            .checked_mul(1000)
            .ok_or_else(|| format!("timestamp {s} is out of range"));
    }
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() && f.abs() < 9.0e15 {
            return Ok((f * 1000.0).round() as i64);
        }
        return Err(format!("timestamp {s:?} is not a finite number of seconds"));
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    if let Ok(dt) = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", s) {
        return dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| format!("timestamp {s:?}: {e}"));
    }
    Err(format!(
        "timestamp {s:?} is neither RFC 3339, YYYY-MM-DD HH:MM:SS, nor a number"
    ))
}

/// Parses a value: a finite number (NaN and infinities are refused; a gap
/// is a missing row, not a NaN).
pub fn parse_value(s: &str) -> Result<f64, String> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!(
            "value {t:?} is not a finite number (leave out the row for a gap)"
        )),
        Err(_) => Err(format!("value {t:?} is not a number")),
    }
}

/// The CSV dialect of every input: the header comes as the first record
/// (the caller checks it), rows may differ in length (reported with their
/// line), fields are trimmed.
fn reader(text: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text)
}

/// The records of `text`, each with the line it starts on, the first
/// being the header. Empty lines are skipped.
fn records<'a>(
    file: &'a str,
    text: &'a [u8],
) -> impl Iterator<Item = Result<(u64, csv::StringRecord), InputError>> + 'a {
    reader(text).into_records().map(move |r| match r {
        Ok(rec) => Ok((line_of(text, rec.position()), rec)),
        Err(e) => Err(InputError::at(
            file,
            line_of(text, e.position()),
            e.to_string(),
        )),
    })
}

/// The line a record starts on. The csv crate gives a record that follows
/// empty lines the position of the first of them (BurntSushi/rust-csv#208,
/// open), so the empty lines from there on are counted here.
fn line_of(text: &[u8], at: Option<&csv::Position>) -> u64 {
    let Some(at) = at else {
        return 0;
    };
    let from = usize::try_from(at.byte()).unwrap_or(usize::MAX);
    let empty = text
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .filter(|&&b| b == b'\n')
        .count();
    at.line() + empty as u64
}

/// The whole of `input`, or an error naming `file`.
fn read_all<R: Read>(file: &str, mut input: R) -> Result<Vec<u8>, InputError> {
    let mut text = Vec::new();
    input
        .read_to_end(&mut text)
        .map_err(|e| InputError::at(file, 0, e.to_string()))?;
    Ok(text)
}

/// The file, opened, and its name for errors.
fn open(path: &Path) -> Result<(String, File), InputError> {
    let file = path.display().to_string();
    match File::open(path) {
        Ok(f) => Ok((file, f)),
        Err(e) => Err(InputError::at(&file, 0, e.to_string())),
    }
}

/// The header (the first record) and its line, or an error naming the
/// file.
fn header(
    file: &str,
    records: &mut impl Iterator<Item = Result<(u64, csv::StringRecord), InputError>>,
) -> Result<(u64, csv::StringRecord), InputError> {
    match records.next() {
        Some(r) => r,
        None => Err(InputError::at(
            file,
            1,
            "empty file: expected a header line",
        )),
    }
}

/// Reads a file whose header is `timestamp,value`, or (`with_id`)
/// `series_id,timestamp,value`; with `with_id` a file with the two-column
/// header is read as one series with an empty id. Series come in order of
/// first appearance; within a series, timestamps must increase.
pub fn read(path: &Path, with_id: bool) -> Result<Vec<Series>, InputError> {
    let (file, input) = open(path)?;
    parse(&file, input, with_id)
}

/// [`read`] on `input`, which errors call `file`.
pub fn parse<R: Read>(file: &str, input: R, with_id: bool) -> Result<Vec<Series>, InputError> {
    let err = |line: u64, message: String| InputError::at(file, line, message);
    let text = read_all(file, input)?;
    let mut records = records(file, &text);
    let (header_line, header) = header(file, &mut records)?;
    let names: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();
    let has_id = match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["timestamp", "value"] => false,
        ["series_id", "timestamp", "value"] if with_id => true,
        _ => {
            let want = if with_id {
                "series_id,timestamp,value (or timestamp,value)"
            } else {
                "timestamp,value"
            };
            return Err(err(
                header_line,
                format!(
                    "expected the header {want}, found {:?}",
                    header.iter().collect::<Vec<_>>().join(",")
                ),
            ));
        }
    };
    let mut series: Vec<Series> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for rec in records {
        let (line, rec) = rec?;
        if is_blank(&rec) {
            continue;
        }
        let want = if has_id { 3 } else { 2 };
        if rec.len() != want {
            return Err(err(
                line,
                format!("expected {want} fields, found {}", rec.len()),
            ));
        }
        let (id, ts, val) = if has_id {
            (&rec[0], &rec[1], &rec[2])
        } else {
            ("", &rec[0], &rec[1])
        };
        let t = parse_timestamp(ts).map_err(|m| err(line, m))?;
        let v = parse_value(val).map_err(|m| err(line, m))?;
        let i = *index.entry(id.to_string()).or_insert_with(|| {
            series.push(Series {
                id: id.to_string(),
                rows: Vec::new(),
            });
            series.len() - 1
        });
        let s = &mut series[i];
        if let Some(prev) = s.rows.last()
            && t <= prev.point.t
        {
            let what = if t == prev.point.t {
                "duplicate"
            } else {
                "out-of-order"
            };
            let of = if id.is_empty() {
                String::new()
            } else {
                format!(" in series {id:?}")
            };
            return Err(err(
                line,
                format!(
                    "{what} timestamp {ts}{of}: line {} has {}; timestamps must increase",
                    prev.line, prev.timestamp
                ),
            ));
        }
        s.rows.push(Row {
            line,
            timestamp: ts.to_string(),
            value: val.to_string(),
            point: Point { t, v },
        });
    }
    if series.is_empty() {
        return Err(err(header_line + 1, "no data rows after the header".into()));
    }
    Ok(series)
}

/// An empty line, which the reader gives as one empty field.
fn is_blank(rec: &csv::StringRecord) -> bool {
    rec.len() == 1 && rec.get(0).is_some_and(str::is_empty)
}

/// A multivariate input, `timestamp,a,b,...`: several values per time.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The header as written (`timestamp` first).
    pub header: Vec<String>,
    /// The rows, timestamps increasing.
    pub rows: Vec<TableRow>,
}

/// One row of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// Line number in the file (the header is line 1).
    pub line: u64,
    /// The fields as written.
    pub fields: Vec<String>,
    /// Parsed time (ms).
    pub t: i64,
    /// Parsed values, one per value column.
    pub values: Vec<f64>,
}

impl Table {
    /// The value columns' names.
    pub fn columns(&self) -> Vec<String> {
        self.header[1..].to_vec()
    }
}

/// Whether the file's header is `timestamp,a,b,...` with more than one
/// value column (a [`Table`]); false when it cannot be read.
pub fn is_table(path: &Path) -> bool {
    let Ok((_, input)) = open(path) else {
        return false;
    };
    // The first line that is not empty, as the reader skips empty ones.
    let mut head = String::new();
    let mut input = std::io::BufReader::new(input);
    while head.trim().is_empty() {
        head.clear();
        if !matches!(input.read_line(&mut head), Ok(n) if n > 0) {
            return false;
        }
    }
    match reader(head.as_bytes()).records().next() {
        Some(Ok(h)) => {
            h.len() > 2
                && h.get(0)
                    .is_some_and(|c| c.eq_ignore_ascii_case("timestamp"))
        }
        _ => false,
    }
}

/// Reads a [`Table`]: a header `timestamp,a,b,...` whose value columns
/// are named and distinct, then rows of as many fields with increasing
/// timestamps and finite values.
pub fn read_table(path: &Path) -> Result<Table, InputError> {
    let (file, input) = open(path)?;
    parse_table(&file, input)
}

/// [`read_table`] on `input`, which errors call `file`.
pub fn parse_table<R: Read>(file: &str, input: R) -> Result<Table, InputError> {
    let err = |line: u64, message: String| InputError::at(file, line, message);
    let text = read_all(file, input)?;
    let mut records = records(file, &text);
    let (header_line, header) = header(file, &mut records)?;
    let header: Vec<String> = header.iter().map(str::to_string).collect();
    if !header
        .first()
        .is_some_and(|c| c.eq_ignore_ascii_case("timestamp"))
        || header.len() < 2
    {
        return Err(err(
            header_line,
            format!(
                "expected the header timestamp,a,b,..., found {:?}",
                header.join(",")
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for n in &header[1..] {
        if n.is_empty() || !seen.insert(n) {
            return Err(err(
                header_line,
                format!("column names must be present and distinct, found {n:?}"),
            ));
        }
    }
    let mut rows: Vec<TableRow> = Vec::new();
    for rec in records {
        let (line, rec) = rec?;
        if is_blank(&rec) {
            continue;
        }
        if rec.len() != header.len() {
            return Err(err(
                line,
                format!("expected {} fields, found {}", header.len(), rec.len()),
            ));
        }
        let t = parse_timestamp(&rec[0]).map_err(|m| err(line, m))?;
        if let Some(prev) = rows.last()
            && t <= prev.t
        {
            return Err(err(
                line,
                format!(
                    "timestamp {} does not increase: line {} has {}",
                    &rec[0], prev.line, prev.fields[0]
                ),
            ));
        }
        let values = rec
            .iter()
            .skip(1)
            .map(parse_value)
            .collect::<Result<Vec<f64>, String>>()
            .map_err(|m| err(line, m))?;
        rows.push(TableRow {
            line,
            fields: rec.iter().map(str::to_string).collect(),
            t,
            values,
        });
    }
    if rows.is_empty() {
        return Err(err(header_line + 1, "no data rows after the header".into()));
    }
    Ok(Table { header, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn timestamps_in_every_form() {
        assert_eq!(parse_timestamp("1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_timestamp("1.5").unwrap(), 1500);
        assert_eq!(parse_timestamp("7").unwrap(), 7000);
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_timestamp("2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_timestamp("2023-11-14 22:13:20").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("").is_err());
        assert!(parse_value("NaN").is_err());
        assert!(parse_value("inf").is_err());
        assert!(parse_value("x").is_err());
        assert_eq!(parse_value(" 2.5 ").unwrap(), 2.5);
    }

    #[test]
    fn reads_series_and_names_bad_lines() {
        let f = file("series_id,timestamp,value\na,1,1.0\nb,1,5\na,2,2\n");
        let s = read(f.path(), true).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].id, "a");
        assert_eq!(s[0].rows.len(), 2);
        assert_eq!(s[0].rows[1].line, 4);
        let f = file("timestamp,value\n1,1\n2,2\n");
        assert_eq!(read(f.path(), true).unwrap()[0].id, "");
        assert_eq!(read(f.path(), false).unwrap()[0].rows.len(), 2);

        let cases = [
            ("1,2\n2,3\n", 1, "header"),
            ("timestamp,value\n1,2\n2,NaN\n", 3, "finite"),
            ("timestamp,value\n1,2\n2,abc\n", 3, "not a number"),
            ("timestamp,value\n1,2\nnever,3\n", 3, "timestamp"),
            ("timestamp,value\n1,2\n1,3\n", 3, "duplicate"),
            ("timestamp,value\n2,2\n1,3\n", 3, "out-of-order"),
            ("timestamp,value\n1,2,3\n", 2, "fields"),
            ("timestamp,value\n", 2, "no data"),
            ("", 1, "header"),
            // Empty lines count (the csv crate alone would say line 3).
            ("timestamp,value\n1,2\n\n\n2,NaN\n", 5, "finite"),
            ("timestamp,value\r\n1,2\r\n\r\n3,x\r\n", 4, "not a number"),
            ("\ntimestamp,value\n1,2\n \n2,3,4\n", 5, "fields"),
        ];
        for (text, line, what) in cases {
            let f = file(text);
            let e = read(f.path(), false).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(what), "{text:?}: {e}");
        }
        let e = read(Path::new("/nonexistent/x.csv"), false).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.csv"));
    }

    #[test]
    fn reads_tables_and_names_bad_lines() {
        let f = file("Timestamp,cpu,mem\n1,0.5,10\n\n2,0.6,11\n");
        assert!(is_table(f.path()));
        let t = read_table(f.path()).unwrap();
        assert_eq!(t.header, ["Timestamp", "cpu", "mem"]);
        assert_eq!(t.columns(), ["cpu", "mem"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!((t.rows[1].line, t.rows[1].t), (4, 2000));
        assert_eq!(t.rows[1].values, [0.6, 11.0]);
        assert_eq!(t.rows[1].fields, ["2", "0.6", "11"]);
        assert!(!is_table(file("timestamp,value\n1,2\n").path()));
        assert!(is_table(file("\n\ntimestamp,a,b\n1,2,3\n").path()));
        assert!(!is_table(file("\n\n").path()));
        assert!(!is_table(Path::new("/nonexistent/x.csv")));

        let cases = [
            ("time,a,b\n1,2,3\n", 1, "header"),
            ("timestamp\n1\n", 1, "header"),
            ("timestamp,a,a\n1,2,3\n", 1, "distinct"),
            ("timestamp,a,\n1,2,3\n", 1, "distinct"),
            ("timestamp,a,b\n1,2\n", 2, "fields"),
            (
                "timestamp,a,b\n2,1,1\n1,1,1\n",
                3,
                "does not increase: line 2 has 2",
            ),
            ("timestamp,a,b\n1,1,inf\n", 2, "finite"),
            ("timestamp,a,b\nx,1,1\n", 2, "timestamp"),
            ("timestamp,a,b\n", 2, "no data"),
            ("", 1, "header"),
            ("\n\ntimestamp,a,a\n", 3, "distinct"),
        ];
        for (text, line, what) in cases {
            let e = parse_table("t.csv", text.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(what), "{text:?}: {e}");
            assert!(e.to_string().starts_with("t.csv:"), "{e}");
        }
    }
}
