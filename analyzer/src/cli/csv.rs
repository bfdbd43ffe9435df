//! Reading and checking the commands' CSV input.
//!
//! Timestamps may be RFC 3339 (`2024-05-01T10:00:00Z`), `YYYY-MM-DD
//! HH:MM:SS` (taken as UTC), or a number: unix seconds, or a plain step
//! number (only the spacing matters to the models). Every error names the
//! file and the line.

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

/// Reads a file whose header is `timestamp,value`, or (`with_id`)
/// `series_id,timestamp,value`; with `with_id` a file with the two-column
/// header is read as one series with an empty id. Series come in order of
/// first appearance; within a series, timestamps must increase.
pub fn read(path: &Path, with_id: bool) -> Result<Vec<Series>, InputError> {
    let file = path.display().to_string();
    let err = |line: u64, message: String| InputError {
        file: file.clone(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| err(0, e.to_string()))?;
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(err(1, e.to_string())),
        None => return Err(err(1, "empty file: expected a header line".into())),
    };
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
                1,
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
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            err(line, e.to_string())
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() == 1 && rec.get(0).is_some_and(str::is_empty) {
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
        return Err(err(2, "no data rows after the header".into()));
    }
    Ok(series)
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
}
