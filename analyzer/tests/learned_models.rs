//! The learned detectors end to end: seeded determinism, ROC AUC against
//! scikit-learn's IsolationForest and OneClassSVM on the same labelled
//! feature rows, the multivariate `score` command, and the analyzer
//! running `iforest`, `ocsvm`, `ensemble` and a multivariate query against
//! a real Prometheus.
//!
//! Print the AUC comparison with
//! `cargo test -p imd-analyzer --test learned_models -- --nocapture`.

mod common;

use common::ranking::roc_auc;

use std::path::Path;

use common::{
    build_recent_tsdb, free_port, http_get, start_analyzer, start_prometheus_on, tempdir,
    venv_tool, wait_for,
};
use imd_analyzer::cli::score::score_series;
use imd_analyzer::model::learned::features::{FeatureSpec, Scaler};
use imd_analyzer::model::learned::iforest::Forest;
use imd_analyzer::model::learned::ocsvm::OneClassSvm;
use imd_analyzer::model::{ModelParams, Point};

/// Deterministic generator (xorshift64*) with Gaussian draws.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// An hourly daily-seasonal series with anomalies injected after `clean`
/// points: spikes, dips, short level shifts, flipped seasons and bursts
/// of variance. Returns the points and a label per point.
fn labelled_series(n: usize, clean: usize, seed: u64) -> (Vec<Point>, Vec<bool>) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut points = Vec::with_capacity(n);
    let mut labels = vec![false; n];
    let mut i = 0;
    let mut events: Vec<(usize, usize, u8)> = Vec::new();
    let mut at = clean + 20;
    while at + 30 < n {
        let kind = (rng.uniform() * 5.0) as u8;
        let len = if kind < 2 { 1 } else { 8 };
        events.push((at, len, kind));
        at += 40 + (rng.uniform() * 40.0) as usize;
    }
    while i < n {
        let day = (std::f64::consts::TAU * i as f64 / 24.0).sin();
        let mut season = 10.0 * day;
        let mut noise = 1.5 * rng.normal();
        let mut extra = 0.0;
        for (start, len, kind) in &events {
            if (*start..start + len).contains(&i) {
                labels[i] = true;
                match kind {
                    0 => extra = 9.0,
                    1 => extra = -9.0,
                    2 => extra = 7.0,
                    3 => season = -season,
                    _ => noise *= 5.0,
                }
            }
        }
        points.push(Point {
            t: i as i64 * 3_600_000,
            v: 100.0 + season + noise + extra,
        });
        i += 1;
    }
    (points, labels)
}

fn write_rows(path: &Path, rows: &[Vec<f64>], labels: Option<&[bool]>) {
    let mut s = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r.iter().map(|x| format!("{x:?}")).collect();
        s.push_str(&cells.join(","));
        if let Some(l) = labels {
            s.push_str(if l[i] { ",1" } else { ",0" });
        }
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

const SKLEARN: &str = r#"
import sys, numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.svm import OneClassSVM
from sklearn.metrics import roc_auc_score
train = np.loadtxt(sys.argv[1], delimiter=",")
test = np.loadtxt(sys.argv[2], delimiter=",")
x, y = test[:, :-1], test[:, -1]
seeds = int(sys.argv[3])
a_if = np.mean([
    roc_auc_score(y, -IsolationForest(n_estimators=100, max_samples=256, random_state=s).fit(train).score_samples(x))
    for s in range(seeds)
])
s = OneClassSVM(kernel="rbf", nu=0.1, gamma=1.0 / train.shape[1], tol=1e-3).fit(train)
a_svm = roc_auc_score(y, -s.decision_function(x))
print(f"{a_if} {a_svm}")
"#;

/// Seeds of the forests compared.
const SEEDS: u64 = 6;

/// imd's detectors and scikit-learn's on the same standardised feature
/// rows: trained on a clean history, judged on a labelled stretch.
#[test]
fn auc_matches_scikit_learn() {
    let python = venv_tool("python");
    let dir = tempdir();
    let (points, labels) = labelled_series(2400, 1200, 7);
    let spec = FeatureSpec::choose(&points[..1200], Some(24), 24);
    let rows = spec.rows(&points);
    let k = spec.lookback();
    let labels = &labels[k..];
    let split = 1200 - k;
    let scaler = Scaler::fit(&rows[..split]);
    let scaled: Vec<Vec<f64>> = rows.iter().map(|r| scaler.apply(r)).collect();
    let (train, test) = scaled.split_at(split);
    let test_labels = &labels[split..];
    assert!(test_labels.iter().any(|l| *l) && !train.is_empty());

    // Forests vary with their seed by about ±0.015 AUC here: compare the
    // mean over the same number of seeds on both sides.
    let imd_if = (0..SEEDS)
        .map(|seed| {
            let forest = Forest::fit(train, 100, 256, seed);
            roc_auc(
                &test.iter().map(|r| forest.score(r)).collect::<Vec<_>>(),
                test_labels,
            )
        })
        .sum::<f64>()
        / SEEDS as f64;
    let refs: Vec<&[f64]> = train.iter().map(|r| r.as_slice()).collect();
    let svm = OneClassSvm::fit(&refs, 0.1, None).unwrap();
    let imd_svm = roc_auc(
        &test.iter().map(|r| -svm.decision(r)).collect::<Vec<_>>(),
        test_labels,
    );

    let train_csv = dir.path().join("train.csv");
    let test_csv = dir.path().join("test.csv");
    write_rows(&train_csv, train, None);
    write_rows(&test_csv, test, Some(test_labels));
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            SKLEARN,
            train_csv.to_str().unwrap(),
            test_csv.to_str().unwrap(),
            &SEEDS.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scikit-learn failed (run `bash .ci/test` to install it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let sk: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    println!(
        "ROC AUC on {} labelled rows ({} anomalous): iforest (mean of {SEEDS} seeds) imd {imd_if:.4} vs scikit-learn {:.4}; ocsvm imd {imd_svm:.4} vs scikit-learn {:.4}",
        test.len(),
        test_labels.iter().filter(|l| **l).count(),
        sk[0],
        sk[1]
    );
    assert!(imd_if >= sk[0] - 0.03, "iforest {imd_if} vs {}", sk[0]);
    assert!(imd_svm >= sk[1] - 0.03, "ocsvm {imd_svm} vs {}", sk[1]);
    for a in [imd_if, imd_svm, sk[0], sk[1]] {
        assert!(a > 0.75, "AUC {a} is not well above chance");
    }
}

#[test]
fn same_seed_same_scores_other_seed_differs() {
    let (points, _) = labelled_series(600, 300, 3);
    for model in ["iforest", "ocsvm", "ensemble"] {
        let p = |seed| ModelParams {
            seed,
            ..ModelParams::default()
        };
        let a = score_series(&points, model, &p(1)).unwrap();
        let b = score_series(&points, model, &p(1)).unwrap();
        assert_eq!(a, b, "{model} is not deterministic");
        assert!(a.iter().skip(100).any(|s| *s > 0.0), "{model} never scored");
        if model == "iforest" {
            let c = score_series(&points, model, &p(2)).unwrap();
            assert_ne!(a, c, "the seed changes nothing");
        }
    }
}

/// A CSV of two correlated columns whose relationship breaks for 12 rows.
fn pair_csv(path: &Path, n: usize, fault: usize) {
    let mut rng = Rng(99);
    let mut s = String::from("timestamp,cpu,rps\n");
    for i in 0..n {
        let phase = std::f64::consts::TAU * i as f64 / 288.0;
        let a = 50.0 + 20.0 * phase.sin() + rng.normal() * 0.5;
        let mut b = 2.0 * a + rng.normal();
        if (fault..fault + 12).contains(&i) {
            b = 2.0 * (100.0 - a) + rng.normal();
        }
        s.push_str(&format!("{},{a:.3},{b:.3}\n", 1_700_000_000 + i * 300));
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn score_command_takes_a_multivariate_csv() {
    let dir = tempdir();
    let input = dir.path().join("pair.csv");
    let output = dir.path().join("out.csv");
    let fault = 288 * 5 + 66;
    pair_csv(&input, 288 * 6, fault);
    let bin = Path::new(env!("CARGO_BIN_EXE_imd-analyzer"));
    let run = |model: &str| {
        std::process::Command::new(bin)
            .args([
                "score",
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
                "--model",
                model,
            ])
            .output()
            .unwrap()
    };
    let out = run("mad");
    assert!(!out.status.success(), "mad is not a multivariate detector");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
    let out = run("iforest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "timestamp,cpu,rps,anomaly_score,contribution_cpu,contribution_rps"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 288 * 6);
    for r in &rows {
        assert!((0.0..=1.0).contains(&r[3]));
        assert!((r[4] + r[5] - 1.0).abs() < 1e-5, "{r:?}");
    }
    let in_fault = rows[fault..fault + 12]
        .iter()
        .map(|r| r[3])
        .fold(0.0, f64::max);
    assert!(in_fault >= 0.99, "{in_fault}");
    let late_normal: Vec<f64> = rows[288 * 3..fault - 2].iter().map(|r| r[3]).collect();
    let high = late_normal.iter().filter(|s| **s >= 0.99).count();
    assert!(
        high <= late_normal.len() / 50,
        "{high} of {} ordinary rows score >= 0.99",
        late_normal.len()
    );
}

fn metric_lines(port: u16, name: &str) -> Vec<String> {
    http_get(port, "/metrics")
        .map(|(_, b)| {
            b.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn value(line: &str) -> f64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The analyzer against a real Prometheus: `iforest`, `ocsvm` and an
/// `ensemble` (of `mad` and `iforest`, from the configuration) on single
/// series, and a multivariate query whose two inputs break their
/// relationship at the end of the history.
#[test]
fn analyzer_publishes_learned_scores_and_contributions() {
    let dir = tempdir();
    // 15 s samples, a cycle of one hour (240 points); the last point sits
    // on a peak of a, where for the last 3 points b mirrors a (stays in
    // its own range, far from twice a).
    let points = 1021;
    let mut rng = Rng(5);
    let noise: Vec<f64> = (0..2 * points).map(|_| rng.normal()).collect();
    let series = [("imd_mv_a", "h1"), ("imd_mv_b", "h1")];
    let tsdb = build_recent_tsdb(dir.path(), &series, points as i64, |i, k| {
        let a = 50.0
            + 20.0 * (std::f64::consts::TAU * k as f64 / 240.0).sin()
            + 0.5 * noise[2 * k as usize];
        if i == 0 {
            return a;
        }
        if k >= points as i64 - 3 {
            2.0 * (100.0 - a) + noise[2 * k as usize + 1]
        } else {
            2.0 * a + noise[2 * k as usize + 1]
        }
    });
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let config = format!(
        "global:\n  infer_every: 1s\n  lookback_delta: 10m\n\
         sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n\
         queries:\n\
         \x20 - name: forest\n    selector: imd_mv_a\n    anomaly_model: iforest\n    history: 5h\n\
         \x20 - name: svm\n    selector: imd_mv_b\n    anomaly_model: ocsvm\n    history: 5h\n    params: {{ocsvm: {{nu: 0.05}}}}\n\
         \x20 - name: joint\n    multivariate:\n      inputs:\n        a: {{selector: imd_mv_a}}\n        b: {{selector: imd_mv_b}}\n      group_by: [instance]\n    anomaly_model: iforest\n    history: 5h\n\
         \x20 - name: ens\n    selector: imd_mv_a\n    anomaly_model: ensemble\n    history: 5h\n    params: {{members: [mad, iforest]}}\n"
    );
    let file = dir.path().join("imd-analyzer.yml");
    std::fs::write(&file, &config).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_imd-analyzer"));
    let bad = config.replace("group_by: [instance]", "group_by: [\"1x\"]");
    std::fs::write(dir.path().join("bad.yml"), bad).unwrap();
    let out = std::process::Command::new(bin)
        .args([
            &format!("--config.file={}", dir.path().join("bad.yml").display()),
            "--check-config",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("queries[2].multivariate.group_by[0]"), "{err}");

    let (mut an, port) = start_analyzer(&file, dir.path(), &[]);
    wait_for("the multivariate contributions", 60, || {
        metric_lines(port, "imd_anomaly_contribution").len() == 2
    });
    let scores = metric_lines(port, "imd_anomaly_score");
    let find = |q: &str| {
        scores
            .iter()
            .find(|l| l.contains(&format!("query=\"{q}\"")))
            .unwrap_or_else(|| panic!("no score for {q}: {scores:?}"))
            .clone()
    };
    assert!(find("forest").contains("model=\"iforest\""));
    assert!(find("svm").contains("model=\"ocsvm\""));
    assert!(
        find("ens").contains("model=\"ensemble\""),
        "{}",
        find("ens")
    );
    let joint = find("joint");
    assert!(
        joint.contains("instance=\"h1\"") && joint.contains("model=\"iforest\""),
        "{joint}"
    );
    assert!(!joint.contains("__name__"), "{joint}");
    assert!(value(&joint) >= 0.99, "the broken relationship: {joint}");
    for q in ["forest", "svm", "ens"] {
        let v = value(&find(q));
        assert!((0.0..=1.0).contains(&v), "{q}: {v}");
    }
    let contrib = metric_lines(port, "imd_anomaly_contribution");
    let sum: f64 = contrib.iter().map(|l| value(l)).sum();
    assert!((sum - 1.0).abs() < 1e-6, "{contrib:?}");
    for input in ["a", "b"] {
        assert!(
            contrib
                .iter()
                .any(|l| l.contains(&format!("input=\"{input}\""))
                    && l.contains("query=\"joint\"")
                    && l.contains("instance=\"h1\"")),
            "{contrib:?}"
        );
    }
    an.stop();
}

/// What the learned models cost (printed; loose bounds only): a fit on a
/// week of 1-minute points (10,080) and scoring per point, in this build.
#[test]
fn cost_of_fit_and_score() {
    use imd_analyzer::model::build;
    let (week, _) = labelled_series(10_080, 10_080, 21);
    let week: Vec<Point> = week
        .into_iter()
        .map(|p| Point {
            t: p.t / 60,
            v: p.v,
        })
        .collect();
    let (suite_like, _) = labelled_series(1200, 700, 4);
    for name in ["iforest", "ocsvm", "ensemble"] {
        let p = ModelParams::default();
        let mut m = build(name, &p).unwrap();
        let started = std::time::Instant::now();
        m.fit(&week).unwrap();
        let fit = started.elapsed().as_secs_f64();
        let state_kb = m.save().to_string().len() / 1024;
        let started = std::time::Instant::now();
        let mut total = 0.0;
        for q in week.iter().take(2000) {
            total += m.score(*q);
            m.update(*q);
        }
        let per_point = started.elapsed().as_secs_f64() / 2000.0;
        assert!(total.is_finite());
        let started = std::time::Instant::now();
        score_series(&suite_like, name, &p).unwrap();
        let series = started.elapsed().as_secs_f64();
        println!(
            "{name}: fit on 10,080 points {fit:.2} s, score+update {:.1} µs per point, online scoring of a 1,200-point series {series:.2} s, saved state {state_kb} KiB",
            per_point * 1e6
        );
        assert!(fit < 120.0 && per_point < 0.05, "{name} is far too slow");
    }
}
