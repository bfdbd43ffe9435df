//! The offline commands as scripts use them: `score`, `forecast` and
//! `backtest` on CSV files, and bad input refused with the line named.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imd-analyzer"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write input");
    p.display().to_string()
}

/// An hourly series with a daily cycle and one spike at `spike`.
fn daily_csv(n: usize, spike: usize, ts: impl Fn(usize) -> String) -> String {
    let mut s = String::from("timestamp,value\n");
    for i in 0..n {
        let mut v = 50.0
            + 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
            + ((i * 7919) % 11) as f64 * 0.2;
        if i == spike {
            v += 40.0;
        }
        s.push_str(&format!("{},{v:.3}\n", ts(i)));
    }
    s
}

#[test]
fn score_writes_one_row_per_input_row() {
    let dir = tempfile::tempdir().unwrap();
    let rfc = |i: usize| {
        jiff::Timestamp::from_second(1_700_000_000 + 3600 * i as i64)
            .unwrap()
            .to_string()
    };
    let input = write(dir.path(), "in.csv", &daily_csv(400, 350, rfc));
    let out = dir.path().join("out.csv");
    let o = run(&[
        "score",
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score");
    assert_eq!(lines.len(), 401);
    let input_text = std::fs::read_to_string(&input).unwrap();
    let scores: Vec<f64> = lines[1..]
        .iter()
        .zip(input_text.lines().skip(1))
        .map(|(l, i)| {
            let (ts_val, score) = l.rsplit_once(',').unwrap();
            assert_eq!(ts_val, i, "timestamp and value are copied");
            score.parse().unwrap()
        })
        .collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    assert!(scores[350] > 0.999, "spike scored {}", scores[350]);
    let high = scores[200..].iter().filter(|s| **s > 0.999).count();
    assert!(high <= 3, "{high} points above 0.999");

    // Other timestamp forms give the same scores.
    let civil = |i: usize| {
        jiff::Timestamp::from_second(1_700_000_000 + 3600 * i as i64)
            .unwrap()
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let unix = |i: usize| (1_700_000_000 + 3600 * i).to_string();
    for (name, f) in [
        ("civil", &civil as &dyn Fn(usize) -> String),
        ("unix", &unix),
    ] {
        let input = write(dir.path(), "in2.csv", &daily_csv(400, 350, f));
        let out2 = dir.path().join(format!("{name}.csv"));
        let o = run(&[
            "score",
            "--input",
            &input,
            "--output",
            out2.to_str().unwrap(),
            "--model",
            "auto",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s2: Vec<f64> = std::fs::read_to_string(&out2)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.rsplit_once(',').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(s2, scores, "{name} timestamps");
    }
}

#[test]
fn forecast_covers_every_series_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("series_id,timestamp,value\n");
    for id in ["a", "b", "c"] {
        for i in 0..300 {
            let v = if id == "c" {
                i as f64
            } else {
                20.0 + 5.0 * (std::f64::consts::TAU * i as f64 / 12.0).sin()
            };
            text.push_str(&format!("{id},{i},{v}\n"));
        }
    }
    let input = write(dir.path(), "in.csv", &text);
    let out = dir.path().join("out.csv");
    let o = run(&[
        "forecast",
        "--input",
        &input,
        "--horizon",
        "24",
        "--level",
        "90",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("series_id,step,yhat,yhat_lower,yhat_upper")
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 72);
    for (k, r) in rows.iter().enumerate() {
        assert_eq!(r[0], ["a", "b", "c"][k / 24]);
        assert_eq!(r[1], (k % 24 + 1).to_string());
        let (y, lo, hi): (f64, f64, f64) = (
            r[2].parse().unwrap(),
            r[3].parse().unwrap(),
            r[4].parse().unwrap(),
        );
        assert!(lo <= y && y <= hi, "{r:?}");
        let step = (k % 24 + 1) as f64;
        let truth = if k / 24 == 2 {
            299.0 + step
        } else {
            20.0 + 5.0 * (std::f64::consts::TAU * (299.0 + step) / 12.0).sin()
        };
        assert!((y - truth).abs() < 1.0, "{r:?} vs {truth}");
    }
}

#[test]
fn forecast_threshold_adds_the_breach_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("series_id,timestamp,value\n");
    for i in 0..100 {
        // "up" climbs one per step; "flat" stays at 50.
        text.push_str(&format!("up,{i},{i}\nflat,{i},50\n"));
    }
    let input = write(dir.path(), "in.csv", &text);
    let out = dir.path().join("out.csv");
    let breach = |extra: &[&str]| -> Vec<(String, String)> {
        let mut args = vec![
            "forecast",
            "--input",
            &input,
            "--horizon",
            "10",
            "--model",
            "drift",
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("series_id,step,yhat,yhat_lower,yhat_upper,breach_steps")
        );
        let rows: Vec<(String, String)> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), 6, "{l}");
                (f[0].to_string(), f[5].to_string())
            })
            .collect();
        assert_eq!(rows.len(), 20);
        rows
    };
    // "up" forecasts 100, 101, …: 104.5 is crossed half-way into step 5,
    // and the value is repeated on each of its rows; "flat" never gets there.
    for (id, b) in breach(&["--threshold", "104.5"]) {
        if id == "up" {
            assert!((b.parse::<f64>().unwrap() - 5.5).abs() < 1e-6, "{b}");
        } else {
            assert_eq!(b, "", "{id}");
        }
    }
    // Below 60: "flat" is already across (0), "up" never comes back.
    for (id, b) in breach(&["--threshold", "60", "--threshold-direction", "below"]) {
        assert_eq!(b, if id == "flat" { "0" } else { "" }, "{id}");
    }
    // The direction alone is refused.
    let o = run(&[
        "forecast",
        "--input",
        &input,
        "--horizon",
        "3",
        "--threshold-direction",
        "below",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}

#[test]
fn backtest_prints_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.csv",
        &daily_csv(400, 10_000, |i| i.to_string()),
    );
    let o = run(&[
        "backtest",
        "--input",
        &input,
        "--horizon",
        "24",
        "--models",
        "drift,mstl",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "sMAPE%", "MASE", "cover@95", "MSIS", "snaive", "drift", "mstl",
    ] {
        assert!(out.contains(want), "{want} missing from\n{out}");
    }
}

#[test]
fn bad_input_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let cases = [
        ("no header", "1,2\n2,3\n", ":1:"),
        ("nan", "timestamp,value\n1,2\n2,NaN\n", ":3:"),
        ("unparsable", "timestamp,value\n1,2\n2,x\n", ":3:"),
        ("duplicate", "timestamp,value\n1,2\n1,3\n", ":3:"),
        ("unsorted", "timestamp,value\n2,2\n1,3\n", ":3:"),
    ];
    for (what, text, line) in cases {
        let input = write(dir.path(), "bad.csv", text);
        for cmd in ["score", "forecast"] {
            let mut args = vec![cmd, "--input", &input, "--output", out.to_str().unwrap()];
            if cmd == "forecast" {
                args.extend(["--horizon", "3"]);
            }
            let o = run(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{what} accepted by {cmd}");
            assert!(err.contains(line), "{what}/{cmd}: {err}");
            assert!(!err.contains("panicked"), "{what}/{cmd}: {err}");
        }
    }
    // Too short to forecast: the series and its first line are named.
    let input = write(
        dir.path(),
        "short.csv",
        "series_id,timestamp,value\nx,1,1\nx,2,2\n",
    );
    let o = run(&[
        "forecast",
        "--input",
        &input,
        "--horizon",
        "3",
        "--output",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains(":2:") && err.contains("too short"), "{err}");
    let o = run(&[
        "score", "--input", &input, "--output", "x", "--model", "nope",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown model"));
}
