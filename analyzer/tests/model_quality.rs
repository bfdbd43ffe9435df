//! Quality of the models on a labelled suite generated here: anomaly
//! detection (precision, recall, F1, detection delay) and forecast accuracy
//! (sMAPE, MASE, coverage, MSIS) against the seasonal naive baseline.
//!
//! The suite is hourly data: daily and weekly seasonality, trend, Gaussian,
//! heavy-tailed and autocorrelated noise, gaps, and counters with resets
//! (turned into rates as the engine does). Injected into the second half:
//! spikes, dips, level shifts, variance changes, trend changes and
//! seasonality breaks. The assertions are general floors (a seasonal model
//! beats the seasonal naive forecast on seasonal data; 95% bounds hold
//! about 95% of the time), not numbers fitted to this suite.
//!
//! Print the tables with
//! `cargo test -p imd-analyzer --test model_quality -- --nocapture --test-threads 1`.

use imd_analyzer::cli::backtest::{Summary, evaluate, table};
use imd_analyzer::cli::score::score_series;
use imd_analyzer::model::{ModelParams, NAMES, Point};
use imd_analyzer::read::rate::per_second;
use rayon::prelude::*;

const HOUR_MS: i64 = 3_600_000;
/// Length of each generated series (hours).
const N: usize = 1200;
/// Anomalies go after this point (the models have warmed up).
const INJECT_FROM: usize = 700;
/// Scores from which a point is an alarm: the analyzer's default page
/// threshold, and a stricter one.
const ALARMS: [f64; 2] = [0.99, 0.999];
/// Points after the start of a sustained change within which it must be
/// found; alarms in this span are not false alarms.
const SUSTAINED_TOLERANCE: usize = 24;

/// Deterministic generator: xorshift64* with Gaussian draws.
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

    /// Student-t with 3 degrees of freedom, scaled to unit variance.
    fn heavy(&mut self) -> f64 {
        let z = self.normal();
        let chi: f64 = (0..3).map(|_| self.normal().powi(2)).sum();
        z / (chi / 3.0).sqrt() / 3f64.sqrt()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Base {
    Daily,
    DailyWeekly,
    TrendDaily,
    HeavyTailed,
    Autocorrelated,
    Gaps,
    CounterRate,
}

const BASES: [Base; 7] = [
    Base::Daily,
    Base::DailyWeekly,
    Base::TrendDaily,
    Base::HeavyTailed,
    Base::Autocorrelated,
    Base::Gaps,
    Base::CounterRate,
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Anomaly {
    Spikes,
    Dips,
    LevelShift,
    VarianceChange,
    TrendChange,
    SeasonalityBreak,
}

const ANOMALIES: [Anomaly; 6] = [
    Anomaly::Spikes,
    Anomaly::Dips,
    Anomaly::LevelShift,
    Anomaly::VarianceChange,
    Anomaly::TrendChange,
    Anomaly::SeasonalityBreak,
];

/// A labelled series: its points and the injected events (index of the
/// first anomalous point, and how many points after it still belong to
/// the event).
struct Labelled {
    points: Vec<Point>,
    events: Vec<(usize, usize)>,
}

fn seasonal(base: Base, i: usize, broken: bool) -> f64 {
    let day = (std::f64::consts::TAU * i as f64 / 24.0).sin();
    let shape = if broken { -day } else { day };
    match base {
        Base::HeavyTailed | Base::Autocorrelated => 0.0,
        Base::DailyWeekly => 10.0 * shape + 6.0 * (std::f64::consts::TAU * i as f64 / 168.0).sin(),
        _ => 10.0 * shape,
    }
}

/// Noise standard deviation of every base series.
const SIGMA: f64 = 1.5;

fn generate(base: Base, anomaly: Anomaly, seed: u64) -> Labelled {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let change = INJECT_FROM + 150 + (rng.uniform() * 150.0) as usize;
    let spikes: Vec<usize> = (0..4)
        .map(|k| INJECT_FROM + 40 + k * 110 + (rng.uniform() * 40.0) as usize)
        .collect();
    let mut ar = 0.0;
    let mut values = Vec::with_capacity(N);
    for i in 0..N {
        let after = i >= change;
        let broken = anomaly == Anomaly::SeasonalityBreak && after;
        let mut noise = match base {
            Base::HeavyTailed => rng.heavy() * SIGMA,
            Base::Autocorrelated => {
                ar = 0.8 * ar + 0.6 * rng.normal() * SIGMA;
                ar
            }
            _ => rng.normal() * SIGMA,
        };
        if anomaly == Anomaly::VarianceChange && after {
            noise *= 4.0;
        }
        let mut v = 100.0 + seasonal(base, i, broken) + noise;
        if base == Base::TrendDaily {
            v += 0.02 * i as f64;
        }
        match anomaly {
            Anomaly::LevelShift if after => v += 5.0 * SIGMA,
            Anomaly::TrendChange if after => v += 0.25 * SIGMA * (i - change) as f64,
            Anomaly::Spikes if spikes.contains(&i) => v += 8.0 * SIGMA,
            Anomaly::Dips if spikes.contains(&i) => v -= 8.0 * SIGMA,
            _ => {}
        }
        values.push(v);
    }
    let mut events: Vec<(usize, usize)> = match anomaly {
        Anomaly::Spikes | Anomaly::Dips => spikes.iter().map(|i| (*i, 1)).collect(),
        _ => vec![(change, SUSTAINED_TOLERANCE)],
    };
    let mut points: Vec<Point> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            t: i as i64 * HOUR_MS,
            v: *v,
        })
        .collect();
    match base {
        Base::Gaps => {
            // Drop a few runs of points (scrape outages), never an event's
            // first point; events are re-indexed to the kept points.
            let mut keep = vec![true; N];
            for k in 0..8 {
                let start = 100 + k * 140 + (rng.uniform() * 40.0) as usize;
                for (j, slot) in keep.iter_mut().enumerate().skip(start).take(6) {
                    if !events.iter().any(|e| e.0 == j) {
                        *slot = false;
                    }
                }
            }
            let index: Vec<usize> = keep
                .iter()
                .scan(0, |n, k| {
                    let i = *n;
                    if *k {
                        *n += 1;
                    }
                    Some(i)
                })
                .collect();
            for e in &mut events {
                e.0 = index[e.0];
            }
            points = points
                .into_iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(p, _)| p)
                .collect();
        }
        Base::CounterRate => {
            // The values are per-second rates × 3600: integrate them into a
            // counter with two resets at random moments inside an
            // interval, then take the rate back, as the engine does.
            let mut counter = Vec::with_capacity(N + 1);
            let mut c = 1e6;
            counter.push(Point { t: -HOUR_MS, v: c });
            let resets = [300usize, 300 + INJECT_FROM / 2];
            for (i, p) in points.iter().enumerate() {
                let inc = p.v.max(0.0);
                if resets.contains(&i) {
                    c = inc * rng.uniform();
                } else {
                    c += inc;
                }
                counter.push(Point { t: p.t, v: c });
            }
            points = per_second(&counter)
                .into_iter()
                .map(|p| Point {
                    t: p.t,
                    v: p.v * 3600.0,
                })
                .collect();
        }
        _ => {}
    }
    Labelled { points, events }
}

fn suite() -> Vec<Labelled> {
    let mut out = Vec::new();
    let mut seed = 1;
    for base in BASES {
        for anomaly in ANOMALIES {
            out.push(generate(base, anomaly, seed));
            seed += 1;
        }
    }
    out
}

/// Detection results of one model over the suite.
#[derive(Debug, Default, Clone)]
struct Detection {
    events: usize,
    found: usize,
    delays: Vec<usize>,
    true_episodes: usize,
    false_episodes: usize,
}

impl Detection {
    fn precision(&self) -> f64 {
        let all = self.true_episodes + self.false_episodes;
        if all == 0 {
            0.0
        } else {
            self.true_episodes as f64 / all as f64
        }
    }
    fn recall(&self) -> f64 {
        self.found as f64 / self.events.max(1) as f64
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    fn delay(&self) -> f64 {
        self.delays.iter().sum::<usize>() as f64 / self.delays.len().max(1) as f64
    }
    fn add(&mut self, o: &Detection) {
        self.events += o.events;
        self.found += o.found;
        self.delays.extend(&o.delays);
        self.true_episodes += o.true_episodes;
        self.false_episodes += o.false_episodes;
    }
}

/// Scores one series online and matches alarms to events. Alarms are
/// merged into episodes (runs of consecutive alarms); an episode starting
/// inside an event's span is a true one. Only alarms after the warm-up
/// count (the first `INJECT_FROM / 2` points).
fn detect(model: &str, s: &Labelled) -> Vec<Detection> {
    let params = ModelParams::default();
    let scores = score_series(&s.points, model, &params).expect("model builds");
    ALARMS
        .iter()
        .map(|a| match_alarms(&scores, s, *a))
        .collect()
}

fn match_alarms(scores: &[f64], s: &Labelled, alarm_at: f64) -> Detection {
    let mut d = Detection {
        events: s.events.len(),
        ..Detection::default()
    };
    for &(start, span) in &s.events {
        if let Some(k) = (start..(start + span).min(scores.len())).find(|&i| scores[i] >= alarm_at)
        {
            d.found += 1;
            d.delays.push(k - start);
        }
    }
    let mut prev = false;
    for (i, sc) in scores.iter().enumerate().skip(INJECT_FROM / 2) {
        let alarm = *sc >= alarm_at;
        if alarm && !prev {
            if s.events
                .iter()
                .any(|&(a, span)| i >= a && i < a + span.max(1))
            {
                d.true_episodes += 1;
            } else {
                d.false_episodes += 1;
            }
        }
        prev = alarm;
    }
    d
}

#[test]
fn anomaly_detection_quality() {
    let suite = suite();
    // IMD_QUALITY_MODELS=auto,theta runs a subset (it must keep auto, zscore
    // and mad, which the floors below compare).
    let only = std::env::var("IMD_QUALITY_MODELS").unwrap_or_default();
    let models: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|m| {
            only.is_empty()
                || ["auto", "zscore", "mad"].contains(m)
                || only.split(',').any(|o| o == *m)
        })
        .collect();
    let jobs: Vec<(usize, usize)> = (0..models.len())
        .flat_map(|m| (0..suite.len()).map(move |s| (m, s)))
        .collect();
    let results: Vec<_> = jobs
        .par_iter()
        .map(|&(m, s)| detect(models[m], &suite[s]))
        .collect();
    let mut seasonal = vec![Detection::default(); models.len()];
    let mut per_kind: Vec<Vec<Detection>> =
        vec![vec![Detection::default(); ANOMALIES.len()]; models.len()];
    for (ai, alarm) in ALARMS.iter().enumerate() {
        let mut total = vec![Detection::default(); models.len()];
        for ((m, s), d) in jobs.iter().zip(&results) {
            total[*m].add(&d[ai]);
            if ai == 0 {
                per_kind[*m][s % ANOMALIES.len()].add(&d[ai]);
                let base = BASES[s / ANOMALIES.len()];
                if !matches!(base, Base::HeavyTailed | Base::Autocorrelated) {
                    seasonal[*m].add(&d[ai]);
                }
            }
        }
        println!(
            "\nAnomaly detection: {} series x {} points (hourly), {} labelled events, alarm at score >= {alarm}",
            suite.len(),
            N,
            total[0].events
        );
        println!(
            "{:<12} {:>6} {:>9} {:>7} {:>7} {:>7} {:>10}",
            "model", "found", "false al.", "prec", "recall", "F1", "delay(pts)"
        );
        for (m, d) in models.iter().zip(&total) {
            println!(
                "{:<12} {:>6} {:>9} {:>7.3} {:>7.3} {:>7.3} {:>10.1}",
                m,
                d.found,
                d.false_episodes,
                d.precision(),
                d.recall(),
                d.f1(),
                d.delay()
            );
        }
    }
    println!("\nRecall by anomaly kind (alarm at {})", ALARMS[0]);
    print!("{:<12}", "model");
    for a in ANOMALIES {
        print!(" {:>16}", format!("{a:?}"));
    }
    println!();
    for (m, kinds) in models.iter().zip(&per_kind) {
        print!("{m:<12}");
        for k in kinds {
            print!(" {:>16.2}", k.recall());
        }
        println!();
    }
    let idx = |n: &str| models.iter().position(|m| *m == n).expect("model listed");
    let (auto, zscore, mad) = (
        &seasonal[idx("auto")],
        &seasonal[idx("zscore")],
        &seasonal[idx("mad")],
    );
    println!(
        "\nOn the seasonal series: auto F1 {:.3}, zscore {:.3}, mad {:.3}",
        auto.f1(),
        zscore.f1(),
        mad.f1()
    );
    // General floors: a model that knows the season does better on seasonal
    // data than one that does not, and finds most isolated spikes and dips.
    assert!(
        auto.f1() > zscore.f1().max(mad.f1()),
        "auto does not beat the non-seasonal models on seasonal series"
    );
    let spikes = &per_kind[idx("auto")][0];
    let dips = &per_kind[idx("auto")][1];
    assert!(
        spikes.recall() >= 0.8 && dips.recall() >= 0.8,
        "auto misses isolated outliers: {} {}",
        spikes.recall(),
        dips.recall()
    );
}

/// On series without anomalies, the share of points at or above an alarm
/// level is the false-alarm rate that level stands for: about 1 % at 0.99
/// and 0.1 % at 0.999 with normal noise. With Student-t(3) noise the
/// exponential tail that caps the scores is lighter than the noise's power
/// law, so 0.999 fires more often than 0.1 % (0.4 % here; scoring by the
/// normal shape alone fired 5.1 % at 0.99 and 2.5 % at 0.999, and this test
/// failed): the bound there is 1 %. Four seeds
/// of 3,000 hourly points each, a daily cycle plus noise; the first 600
/// points are left out (the models' first fits).
#[test]
fn alarm_rates_on_clean_series_match_their_level() {
    let n = 3000;
    println!("\nAlarm rates on clean series (4 x {n} points, daily cycle), auto");
    for (name, heavy, max999) in [
        ("normal noise", false, 0.003),
        ("Student-t(3) noise", true, 0.01),
    ] {
        let (mut at99, mut at999, mut total) = (0usize, 0usize, 0usize);
        for seed in 1..=4u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let points: Vec<Point> = (0..n)
                .map(|i| {
                    let noise = if heavy { rng.heavy() } else { rng.normal() };
                    Point {
                        t: i as i64 * HOUR_MS,
                        v: 50.0 + seasonal(Base::Daily, i, false) + noise * SIGMA,
                    }
                })
                .collect();
            let scores = score_series(&points, "auto", &ModelParams::default()).expect("auto");
            let judged = &scores[600..];
            at99 += judged.iter().filter(|s| **s >= 0.99).count();
            at999 += judged.iter().filter(|s| **s >= 0.999).count();
            total += judged.len();
        }
        let (r99, r999) = (at99 as f64 / total as f64, at999 as f64 / total as f64);
        println!("{name:<20} >= 0.99: {r99:.4}   >= 0.999: {r999:.4}");
        assert!(r99 <= 0.025, "{name}: {r99} of points at 0.99");
        assert!(r999 <= max999, "{name}: {r999} of points at 0.999");
        assert!(
            r99 >= 0.002,
            "{name}: {r99} of points at 0.99: scores too timid"
        );
    }
}

/// Clean series (no anomalies) for forecasting.
fn forecast_suite(seasonal_only: bool) -> Vec<(String, Vec<Point>)> {
    let mut out = Vec::new();
    let mut seed = 1000;
    for base in BASES {
        let is_seasonal = !matches!(base, Base::HeavyTailed | Base::Autocorrelated);
        if seasonal_only != is_seasonal {
            continue;
        }
        for _ in 0..3 {
            seed += 1;
            let s = generate(base, Anomaly::Spikes, seed);
            // Forecast a clean copy: regenerate without the spikes by
            // dropping the labelled points' excess.
            let mut points = s.points;
            for (i, _) in &s.events {
                if let Some(p) = points.get_mut(*i) {
                    p.v -= 8.0 * SIGMA;
                }
            }
            points.truncate(INJECT_FROM + 200);
            out.push((format!("{base:?}"), points));
        }
    }
    out
}

fn run_backtest(seasonal_only: bool) -> Vec<Summary> {
    let suite = forecast_suite(seasonal_only);
    let models: Vec<String> = ["snaive", "drift", "ets", "mstl", "prophet", "auto", "lstm"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if std::env::var_os("IMD_QUALITY_DETAIL").is_some() {
        for base in BASES {
            let one: Vec<Vec<Point>> = suite
                .iter()
                .filter(|s| s.0 == format!("{base:?}"))
                .map(|s| s.1.clone())
                .collect();
            if !one.is_empty() {
                println!("\n{base:?}");
                print!(
                    "{}",
                    table(&evaluate(&one, &models, 24, 0.95, 4, None), 0.95)
                );
            }
        }
    }
    let series: Vec<Vec<Point>> = suite.into_iter().map(|s| s.1).collect();
    let r = evaluate(&series, &models, 24, 0.95, 4, None);
    println!(
        "\nForecast accuracy, {} series ({}), horizon 24, 4 origins, 95% bounds",
        series.len(),
        if seasonal_only {
            "seasonal"
        } else {
            "non-seasonal"
        }
    );
    print!("{}", table(&r, 0.95));
    r
}

fn get<'a>(r: &'a [Summary], m: &str) -> &'a Summary {
    r.iter().find(|s| s.model == m).expect("model evaluated")
}

#[test]
fn forecast_accuracy_on_seasonal_series() {
    let r = run_backtest(true);
    let (auto, snaive, mstl) = (get(&r, "auto"), get(&r, "snaive"), get(&r, "mstl"));
    assert_eq!(auto.failed, 0);
    assert!(
        auto.mase < snaive.mase,
        "auto MASE {} >= seasonal naive {}",
        auto.mase,
        snaive.mase
    );
    assert!(mstl.mase < snaive.mase, "mstl does not beat seasonal naive");
    for s in [auto, snaive, mstl] {
        assert!(
            (0.85..=0.99).contains(&s.coverage),
            "{} 95% bounds cover {}",
            s.model,
            s.coverage
        );
    }
}

#[test]
fn forecast_accuracy_on_non_seasonal_series() {
    let r = run_backtest(false);
    let auto = get(&r, "auto");
    assert_eq!(auto.failed, 0);
    assert!(
        (0.85..=0.99).contains(&auto.coverage),
        "auto 95% bounds cover {}",
        auto.coverage
    );
    // Picking by backtest should not be much worse than the best single
    // model in hindsight.
    let best = r.iter().map(|s| s.mase).fold(f64::INFINITY, f64::min);
    assert!(
        auto.mase <= 1.25 * best,
        "auto {} vs best {best}",
        auto.mase
    );
}
