//! imd's Prophet (augurs-prophet with imd's L-BFGS optimiser in place of
//! Stan) against Python's Prophet 1.1.7 (Stan's L-BFGS), installed into the
//! test venv by `.ci/test`.
//!
//! Both fit the same two series with Prophet's defaults: an hourly one
//! generated here (trend with two changepoints, daily and weekly cycles,
//! noise) and CO2 at Mauna Loa from statsmodels (monthly, yearly cycle).
//! Checked: the forecasts agree (mean absolute difference of `yhat` within
//! 2 % of the series' range), imd's objective at Python's parameters equals
//! Stan's `-lp__` (the same posterior, up to the smoothing of |delta|), and
//! the optimum imd reaches is at least as good as Stan's.
//!
//! Also measured (printed): fit time of 1,000 and 10,080 points.
//! `cargo test -p imd-analyzer --test prophet_oracle -- --nocapture --test-threads 1`

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use augurs::prophet::optimizer::{
    Data, Error, InitialParams, OptimizeOpts, OptimizedParams, Optimizer,
};
use augurs::prophet::{PredictionData, Prophet, ProphetOptions, TrainingData};
use imd_analyzer::model::prophet::optimizer::{Lbfgs, Objective};
use imd_analyzer::model::{ModelParams, Point, build};

/// Fits each `NAME.csv` (header `ds,y`, ds in unix seconds) in the given
/// dir with Prophet's defaults and writes `NAME.json`: parameters, scaled
/// changepoints, seasonalities in feature order, `-lp__`, and `yhat` at the
/// future times in `NAME.future`. Also writes `co2.csv` from statsmodels.
const SCRIPT: &str = r#"
import json, logging, sys, time
import numpy as np, pandas as pd
import statsmodels.api as sm
logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
logging.getLogger("prophet").setLevel(logging.WARNING)
from prophet import Prophet

d = sys.argv[1]
co2 = sm.datasets.co2.load_pandas().data["co2"].resample("MS").mean().ffill().bfill()
ds = (co2.index.astype("int64") // 10**9).astype(int)
pd.DataFrame({"ds": ds, "y": co2.to_numpy()}).to_csv(f"{d}/co2.csv", index=False)
future = {"co2": [int(x) for x in pd.date_range(co2.index[-1], periods=25, freq="MS")[1:].astype("int64") // 10**9]}
with open(f"{d}/hourly.future") as f:
    future["hourly"] = [int(x) for x in f.read().split()]

for name in ["hourly", "co2"]:
    df = pd.read_csv(f"{d}/{name}.csv")
    df["ds"] = pd.to_datetime(df["ds"], unit="s")
    m = Prophet(uncertainty_samples=0)
    t0 = time.time()
    m.fit(df)
    secs = time.time() - t0
    fut = pd.DataFrame({"ds": pd.to_datetime(future[name], unit="s")})
    yhat = m.predict(fut)["yhat"].to_numpy()
    p = m.params
    out = {
        "k": float(p["k"][0][0]), "m": float(p["m"][0][0]),
        "sigma_obs": float(p["sigma_obs"][0][0]),
        "delta": [float(x) for x in p["delta"][0]],
        "beta": [float(x) for x in p["beta"][0]],
        "neg_lp": -float(p["lp__"][0][0]),
        "changepoints_t": [float(x) for x in m.changepoints_t],
        "seasonalities": [[k, float(v["period"]), int(v["fourier_order"])] for k, v in m.seasonalities.items()],
        "future": future[name], "yhat": [float(x) for x in yhat], "fit_seconds": secs,
    }
    with open(f"{d}/{name}.json", "w") as f:
        json.dump(out, f)
"#;

/// Deterministic Gaussian noise (xorshift + Box-Muller).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// 2024-01-01T00:00:00Z.
const START: i64 = 1_704_067_200;

/// Hourly: a trend whose slope changes twice, daily and weekly cycles,
/// Gaussian noise (sd 1).
fn hourly(n: usize) -> Vec<(i64, f64)> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|i| {
            let x = i as f64;
            let trend =
                100.0 + 0.05 * x - 0.08 * (x - 300.0).max(0.0) + 0.06 * (x - 600.0).max(0.0);
            let day = 6.0 * (std::f64::consts::TAU * x / 24.0).sin()
                + 2.0 * (std::f64::consts::TAU * x / 12.0).cos();
            let week = 4.0 * (std::f64::consts::TAU * x / 168.0).sin();
            (START + i as i64 * 3600, trend + day + week + rng.normal())
        })
        .collect()
}

/// An optimiser that records the data it is given, then runs imd's.
#[derive(Debug, Clone, Default)]
struct Capture {
    inner: Lbfgs,
    data: Arc<Mutex<Option<Data>>>,
}

impl Optimizer for Capture {
    fn optimize(
        &self,
        init: &InitialParams,
        data: &Data,
        opts: &OptimizeOpts,
    ) -> Result<OptimizedParams, Error> {
        *self.data.lock().expect("lock") = Some(data.clone());
        self.inner.optimize(init, data, opts)
    }
}

fn read_csv(path: &Path) -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(path).expect("reading csv");
    text.lines()
        .skip(1)
        .map(|l| {
            let (a, b) = l.split_once(',').expect("two columns");
            (a.parse().expect("ds"), b.parse().expect("y"))
        })
        .collect()
}

/// Python's feature column (`name`, harmonic, sine or cosine) at times `ds`.
fn fourier(ds: &[i64], period: f64, harmonic: usize, sine: bool) -> Vec<f64> {
    ds.iter()
        .map(|d| {
            let a = *d as f64 / 86_400.0 * std::f64::consts::TAU * (harmonic + 1) as f64 / period;
            if sine { a.sin() } else { a.cos() }
        })
        .collect()
}

/// Python's coefficients in the order of the captured data's columns.
fn python_beta(py: &serde_json::Value, ds: &[i64], data: &Data) -> Vec<f64> {
    let k = data.sigmas.len();
    let beta: Vec<f64> = serde_json::from_value(py["beta"].clone()).expect("beta");
    let mut cols = Vec::new();
    for s in py["seasonalities"].as_array().expect("seasonalities") {
        let (period, order) = (
            s[1].as_f64().expect("period"),
            s[2].as_u64().expect("order"),
        );
        for h in 0..order as usize {
            cols.push(fourier(ds, period, h, true));
            cols.push(fourier(ds, period, h, false));
        }
    }
    assert_eq!(cols.len(), beta.len(), "Python's feature count");
    assert_eq!(cols.len(), k, "imd's and Python's feature counts differ");
    let mut out = vec![f64::NAN; k];
    for c in 0..k {
        let col: Vec<f64> = data.X.chunks_exact(k).map(|row| row[c]).collect();
        let j = cols
            .iter()
            .position(|p| p.iter().zip(&col).all(|(a, b)| (a - b).abs() < 1e-9))
            .unwrap_or_else(|| panic!("imd's feature column {c} is none of Python's"));
        out[c] = beta[j];
    }
    out
}

fn compare(name: &str, dir: &Path) {
    let series = read_csv(&dir.join(format!("{name}.csv")));
    let py: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("python output"),
    )
    .expect("json");
    let ds: Vec<i64> = series.iter().map(|p| p.0).collect();
    let y: Vec<f64> = series.iter().map(|p| p.1).collect();
    let capture = Capture::default();
    let opts = ProphetOptions {
        uncertainty_samples: 0,
        ..ProphetOptions::default()
    };
    let mut prophet = Prophet::new(opts, capture.clone());
    let started = Instant::now();
    prophet
        .fit(
            TrainingData::new(ds.clone(), y.clone()).expect("data"),
            OptimizeOpts::default(),
        )
        .expect("imd fit");
    let secs = started.elapsed().as_secs_f64();
    let future: Vec<i64> = serde_json::from_value(py["future"].clone()).expect("future");
    let py_yhat: Vec<f64> = serde_json::from_value(py["yhat"].clone()).expect("yhat");
    let ours = prophet
        .predict(PredictionData::new(future.clone()))
        .expect("predict")
        .yhat
        .point;
    let range = y.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - y.iter().copied().fold(f64::INFINITY, f64::min);
    let mad = ours
        .iter()
        .zip(&py_yhat)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / ours.len() as f64;

    let data = capture
        .data
        .lock()
        .expect("lock")
        .clone()
        .expect("captured");
    let t_change: Vec<f64> =
        serde_json::from_value(py["changepoints_t"].clone()).expect("changepoints");
    assert_eq!(t_change.len(), data.t_change.len(), "{name}: changepoints");
    for (a, b) in t_change.iter().zip(&data.t_change) {
        assert!((a - b).abs() < 1e-9, "{name}: changepoint {a} vs {b}");
    }
    let objective = Objective::new(&data, false).expect("objective");
    let mine = capture.inner.last().expect("params");
    let f_mine =
        objective.value(&objective.pack(mine.k, mine.m, mine.sigma_obs, &mine.delta, &mine.beta));
    let py_delta: Vec<f64> = serde_json::from_value(py["delta"].clone()).expect("delta");
    let f = |key: &str| py[key].as_f64().expect("number");
    let f_py = objective.value(&objective.pack(
        f("k"),
        f("m"),
        f("sigma_obs"),
        &py_delta,
        &python_beta(&py, &ds, &data),
    ));
    let neg_lp = f("neg_lp");
    println!(
        "{name}: {} points; mean |yhat diff| {mad:.4} = {:.3}% of range; objective imd {f_mine:.3}, \
         at Python's optimum {f_py:.3}, Stan's -lp__ {neg_lp:.3}; fit imd {secs:.2} s, Python {:.2} s",
        y.len(),
        100.0 * mad / range,
        f("fit_seconds")
    );
    // Same posterior: the smoothing of |delta| moves it by < S·EPS/tau.
    assert!(
        (f_py - neg_lp).abs() < 0.1,
        "{name}: imd's objective at Python's optimum {f_py} vs Stan's {neg_lp}"
    );
    // imd's optimum is at least as good as Stan's.
    assert!(
        f_mine <= f_py + 0.05,
        "{name}: imd stopped at {f_mine}, Stan reached {f_py}"
    );
    assert!(
        mad <= 0.02 * range,
        "{name}: forecasts differ by {mad} on average (range {range})"
    );
}

#[test]
fn agrees_with_python_prophet() {
    let python = common::venv_tool("python");
    let dir = common::tempdir();
    let series = hourly(840);
    let mut csv = String::from("ds,y\n");
    for (d, y) in &series {
        csv.push_str(&format!("{d},{y}\n"));
    }
    std::fs::write(dir.path().join("hourly.csv"), csv).expect("write");
    let last = series.last().expect("points").0;
    let future: Vec<String> = (1..=48).map(|h| (last + h * 3600).to_string()).collect();
    std::fs::write(dir.path().join("hourly.future"), future.join("\n")).expect("write");
    let script = dir.path().join("oracle.py");
    std::fs::write(&script, SCRIPT).expect("write");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let (ok, out) = common::run_capture(&python, &[script.to_str().expect("utf-8 path"), dir_arg]);
    assert!(
        ok,
        "Python Prophet failed (does the venv have prophet==1.1.7 and cmdstanpy==1.2.5? \
         run `bash .ci/test`):\n{out}"
    );
    compare("hourly", dir.path());
    compare("co2", dir.path());
}

/// Fit cost of the `prophet` model at two sizes, and of scoring a point.
#[test]
fn fit_cost() {
    for n in [1_000usize, 10_080] {
        // One point a minute: 10,080 is a week.
        let points: Vec<Point> = hourly(n)
            .into_iter()
            .enumerate()
            .map(|(i, (_, v))| Point {
                t: (START + i as i64 * 60) * 1000,
                v,
            })
            .collect();
        let params = ModelParams {
            window: n,
            ..ModelParams::default()
        };
        let mut m = build("prophet", &params).expect("prophet builds");
        let started = Instant::now();
        m.fit(&points).expect("fit");
        let fit = started.elapsed().as_secs_f64();
        let next = Point {
            t: points[n - 1].t + 60_000,
            v: points[n - 1].v,
        };
        let started = Instant::now();
        let rounds = 200;
        let mut s = 0.0;
        for _ in 0..rounds {
            s += m.score(next);
        }
        let per_score = started.elapsed().as_secs_f64() / rounds as f64;
        assert!(s.is_finite());
        println!(
            "prophet: fit of {n} points {fit:.3} s (incl. the held-out seeding fit), score {:.1} µs/point",
            per_score * 1e6
        );
        assert!(m.forecast(10, 0.95).is_some());
    }
}
