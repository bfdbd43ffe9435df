//! imd's detectors on labelled anomaly series that are not generated here:
//! the two the PyPI package aeon ships in its wheel (`.ci/test` downloads
//! `aeon-1.6.0-py3-none-any.whl` without its dependencies, which are not
//! needed to read two CSV files):
//!
//! - `135_UCR_Anomaly_InternalBleeding16` from the UCR anomaly archive
//!   (KDD Cup 2021): 7,501 points of a physiological signal with one
//!   labelled anomaly of 12 points, a cycle of an unusual shape;
//! - `ecg-diff-count-3`: 10,000 points of a synthetic ECG whose labelled
//!   beats (3 % of the points) have a different shape.
//!
//! Each is scored online as `imd-analyzer score` does, and ranked by
//! average precision and ROC AUC from point 200 on (before it the models
//! have not fitted). The floors asserted are far below the measured
//! figures and far above what a detector blind to the anomalies gets (its
//! average precision is the share of anomalous points, 0.0016 and 0.03):
//! they catch a detector that stops finding these anomalies, not small
//! changes. Print the table with
//! `cargo test -p imd-analyzer --test public_anomalies -- --nocapture`.

mod common;

use std::path::{Path, PathBuf};

use common::ranking::{average_precision, roc_auc};
use imd_analyzer::cli::score::score_series;
use imd_analyzer::model::{ModelParams, Point};

/// Points skipped before ranking: the models' first fit.
const SKIP: usize = 200;

/// The aeon wheel `.ci/test` downloads next to its venv.
fn wheel() -> PathBuf {
    let venv = common::venv_tool("python");
    let w = venv
        .parent()
        .and_then(Path::parent)
        .expect("venv layout")
        .join("wheels/aeon-1.6.0-py3-none-any.whl");
    assert!(
        w.is_file(),
        "{} was not found; run `bash .ci/test`, which downloads it",
        w.display()
    );
    w
}

/// A labelled series: values and whether each point is anomalous.
struct Labelled {
    name: &'static str,
    values: Vec<f64>,
    anomalous: Vec<bool>,
}

/// Extracts `members` of the wheel into `dir` with the venv's Python (the
/// zip reader of its standard library) and reads them.
fn load(dir: &Path) -> Vec<Labelled> {
    const MEMBERS: [(&str, &str); 2] = [
        (
            "ucr-135",
            "aeon/datasets/data/KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv",
        ),
        (
            "ecg-diff-count-3",
            "aeon/datasets/data/UnitTest/ecg-diff-count-3_TEST.csv",
        ),
    ];
    let python = common::venv_tool("python");
    let script = "import sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  for m in sys.argv[3:]: z.extract(m, sys.argv[2])\n";
    let wheel = wheel();
    let mut args = vec![
        "-c",
        script,
        wheel.to_str().expect("utf-8 path"),
        dir.to_str().expect("utf-8 path"),
    ];
    args.extend(MEMBERS.iter().map(|(_, m)| *m));
    common::run_ok(&python, &args);
    MEMBERS
        .iter()
        .map(|(name, member)| {
            let mut values = Vec::new();
            let mut anomalous = Vec::new();
            // Columns: timestamp (a step), value, is_anomaly.
            for r in common::csv_records(&dir.join(member)) {
                values.push(common::export_num::<f64>(&r[1]));
                anomalous.push(common::export_num::<f64>(&r[2]) == 1.0);
            }
            Labelled {
                name,
                values,
                anomalous,
            }
        })
        .collect()
}

/// Online scores of `s` by `model`, one point a minute.
fn scores(s: &Labelled, model: &str) -> Vec<f64> {
    let points: Vec<Point> = s
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            t: 1_700_000_000_000 + i as i64 * 60_000,
            v: *v,
        })
        .collect();
    score_series(&points, model, &ModelParams::default()).expect("scores")
}

#[test]
fn metrics_match_their_definitions_on_a_small_case() {
    // scikit-learn 1.9.1: average_precision_score([0,1,0,1,1], [.1,.9,.4,.35,.8])
    // = 0.9166..., roc_auc_score = 0.8333...
    let y = [false, true, false, true, true];
    let s = [0.1, 0.9, 0.4, 0.35, 0.8];
    assert!((average_precision(&s, &y) - 11.0 / 12.0).abs() < 1e-12);
    assert!((roc_auc(&s, &y) - 5.0 / 6.0).abs() < 1e-12);
    // Ties form one step: every point scored alike ranks at the base rate.
    let flat = [0.5; 5];
    assert!((average_precision(&flat, &y) - 0.6).abs() < 1e-12);
    assert!((roc_auc(&flat, &y) - 0.5).abs() < 1e-12);
}

#[test]
fn detectors_find_the_labelled_anomalies_of_public_series() {
    let dir = common::tempdir();
    let series = load(dir.path());
    println!("series              model     AP       AUC    top score at (anomaly)");
    let mut found = std::collections::HashMap::new();
    for s in &series {
        let first = s
            .anomalous
            .iter()
            .position(|a| *a)
            .expect("a labelled anomaly");
        let last = s
            .anomalous
            .iter()
            .rposition(|a| *a)
            .expect("a labelled anomaly");
        for model in ["auto", "discord"] {
            let sc = scores(s, model);
            assert_eq!(sc.len(), s.values.len());
            let (sc, y) = (&sc[SKIP..], &s.anomalous[SKIP..]);
            let ap = average_precision(sc, y);
            let auc = roc_auc(sc, y);
            let top = SKIP
                + (0..sc.len())
                    .max_by(|a, b| sc[*a].total_cmp(&sc[*b]))
                    .expect("scores");
            println!(
                "{:<19} {model:<8} {ap:>6.3} {auc:>8.3}   {top} ({first}..={last})",
                s.name
            );
            found.insert((s.name, model), (ap, auc, top, first..=last + 10));
        }
    }
    // The UCR series: one anomaly in 7,300 ranked points (base rate
    // 0.0016); the highest score must fall in it or just after it (a
    // stretch or a forecast error ends at the point scored).
    let (ap, auc, top, near) = &found[&("ucr-135", "auto")];
    assert!(
        *ap > 0.1 && *auc > 0.8,
        "auto on ucr-135: AP {ap}, AUC {auc}"
    );
    assert!(
        near.contains(top),
        "auto's highest score on ucr-135 is at {top}, outside {near:?}"
    );
    let (ap, auc, top, near) = &found[&("ucr-135", "discord")];
    assert!(
        *ap > 0.3 && *auc > 0.95,
        "discord on ucr-135: AP {ap}, AUC {auc}"
    );
    assert!(
        near.contains(top),
        "discord's highest score on ucr-135 is at {top}, outside {near:?}"
    );
    // The ECG: beats of a new shape, which forecasts hardly see (base rate
    // 0.03); discord compares shapes and must rank them well above it.
    let auto_ap = found[&("ecg-diff-count-3", "auto")].0;
    let (ap, auc, _, _) = &found[&("ecg-diff-count-3", "discord")];
    assert!(
        *ap > 0.15 && *auc > 0.6 && *ap > auto_ap,
        "discord on ecg-diff-count-3: AP {ap} (auto {auto_ap}), AUC {auc}"
    );
}
