//! The offline commands' CSV input (`score`, `forecast`, `backtest`:
//! `timestamp,value`, `series_id,timestamp,value`, and the multivariate
//! `timestamp,a,b,...`) on arbitrary bytes: an error naming the line,
//! never a panic; what is accepted has increasing timestamps, finite
//! values and a row per data line at most.
#![no_main]

use imd_analyzer::cli::csv::{parse, parse_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&how, text)) = data.split_first() else {
        return;
    };
    let lines = text.split(|&b| b == b'\n').count() as u64;
    let check_line = |line: u64| assert!(line <= lines + 1, "line {line} of {lines}");
    if how & 1 == 1 {
        match parse("in.csv", text, how & 2 == 0) {
            Ok(series) => {
                assert!(!series.is_empty());
                for s in &series {
                    assert!(!s.rows.is_empty());
                    assert!(s.rows.windows(2).all(|w| w[0].point.t < w[1].point.t));
                    assert!(s.rows.iter().all(|r| r.point.v.is_finite()));
                    s.rows.iter().for_each(|r| check_line(r.line));
                }
            }
            Err(e) => check_line(e.line),
        }
    } else {
        match parse_table("in.csv", text) {
            Ok(t) => {
                assert!(t.header.len() >= 2 && !t.rows.is_empty());
                assert!(t.rows.windows(2).all(|w| w[0].t < w[1].t));
                for r in &t.rows {
                    assert_eq!(r.values.len() + 1, t.header.len());
                    assert!(r.values.iter().all(|v| v.is_finite()));
                    check_line(r.line);
                }
            }
            Err(e) => check_line(e.line),
        }
    }
});
