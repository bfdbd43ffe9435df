//! Seasonality: putting a window on a regular grid, and finding its
//! seasonal periods.
//!
//! Detection takes candidate periods from augurs' Welch periodogram and
//! refines each by the autocorrelation around it: the periodogram's
//! frequency bins are coarse (it reports 25 or 21 for a period of 24), while
//! the autocorrelation peaks at the exact lag.

use augurs::seasons::PeriodogramDetector;

use super::Point;

/// Autocorrelation a period needs to count as seasonality worth modelling.
const MIN_ACF: f64 = 0.3;
/// Cycles of data a period needs to be detected.
const MIN_CYCLES: f64 = 2.5;
/// Longest grid built from a window (slots), whatever its gaps.
const MAX_GRID: usize = 100_000;

/// The window's values on a regular grid of `step` ms ending at its last
/// point: a point is put in the nearest slot, and slots no point fell into
/// (gaps) are filled by linear interpolation between their neighbours.
pub fn regular(points: &[Point], step: i64) -> Vec<f64> {
    let finite: Vec<Point> = points.iter().copied().filter(|p| p.v.is_finite()).collect();
    let (Some(first), Some(last)) = (finite.first(), finite.last()) else {
        return Vec::new();
    };
    if step <= 0 {
        return finite.iter().map(|p| p.v).collect();
    }
    let span = ((last.t - first.t) as f64 / step as f64).round().max(0.0) as usize;
    let slots = (span + 1).min(MAX_GRID);
    let origin = last.t - (slots as i64 - 1) * step;
    let mut grid: Vec<Option<f64>> = vec![None; slots];
    for p in &finite {
        let i = ((p.t - origin) as f64 / step as f64).round();
        if i >= 0.0 && (i as usize) < slots {
            grid[i as usize] = Some(p.v);
        }
    }
    let mut out = Vec::with_capacity(slots);
    let mut prev: Option<(usize, f64)> = None;
    let mut i = 0;
    while i < slots {
        if let Some(v) = grid[i] {
            out.push(v);
            prev = Some((i, v));
            i += 1;
            continue;
        }
        // A gap: find the next filled slot and interpolate.
        let next = (i..slots).find_map(|j| grid[j].map(|v| (j, v)));
        for k in i..next.map(|n| n.0).unwrap_or(slots) {
            let v = match (prev, next) {
                (Some((a, va)), Some((b, vb))) => va + (vb - va) * (k - a) as f64 / (b - a) as f64,
                (Some((_, va)), None) => va,
                (None, Some((_, vb))) => vb,
                (None, None) => 0.0,
            };
            out.push(v);
        }
        i = next.map(|n| n.0).unwrap_or(slots);
    }
    out
}

/// The clock's cycles that metrics follow (an hour, a day, a week), in ms.
const CALENDAR_MS: [i64; 3] = [3_600_000, 86_400_000, 604_800_000];
/// How close (as a share of the cycle) a detected period must be to one
/// of the clock's cycles to be taken as that cycle.
const CALENDAR_TOLERANCE: f64 = 0.01;

/// Seasonal periods of points sampled every `step` ms: [`detect`] on
/// their regular grid, each period within 1 % of an hour, a day or a week
/// taken as exactly that. Metrics follow the clock, and noise leaves a long
/// period uncertain by a few points (a daily one over a week of one-minute
/// samples with noise a tenth of the cycle's swing: 1,435 to 1,441), which
/// would shift each cycle's shape against the last.
pub fn detect_sampled(points: &[Point], step: i64) -> Vec<usize> {
    if let Some(periods) = LAST_DETECTED.with_borrow(|last| last.answer(points, step)) {
        return periods;
    }
    let periods = detect_sampled_afresh(points, step);
    LAST_DETECTED.with_borrow_mut(|last| last.remember(points, step, &periods));
    periods
}

thread_local! {
    /// This thread's last [`detect_sampled`] question and answer: a full fit
    /// of `auto` asks three times for the seasons of the same history (for
    /// its backtest, its judge and its pick), and the three detections were
    /// a tenth of that fit's CPU.
    static LAST_DETECTED: std::cell::RefCell<LastDetected> = const {
        std::cell::RefCell::new(LastDetected {
            step: 0,
            points: Vec::new(),
            periods: Vec::new(),
        })
    };
}

/// A [`detect_sampled`] question and its answer.
struct LastDetected {
    step: i64,
    points: Vec<Point>,
    periods: Vec<usize>,
}

impl LastDetected {
    /// The periods found for exactly these points (compared whole, so an
    /// answer is never taken for a history that differs in any point).
    fn answer(&self, points: &[Point], step: i64) -> Option<Vec<usize>> {
        (!points.is_empty() && step == self.step && points == self.points.as_slice())
            .then(|| self.periods.clone())
    }

    fn remember(&mut self, points: &[Point], step: i64, periods: &[usize]) {
        self.step = step;
        self.points.clear();
        self.points.extend_from_slice(points);
        self.points.shrink_to(points.len());
        self.periods = periods.to_vec();
    }
}

/// [`detect_sampled`] without looking at the last answer.
fn detect_sampled_afresh(points: &[Point], step: i64) -> Vec<usize> {
    let mut periods = detect(&regular(points, step));
    for p in &mut periods {
        let nearest = CALENDAR_MS
            .iter()
            .filter(|c| step > 0 && *c % step == 0)
            .map(|c| (c / step) as usize)
            .find(|c| (*p as f64 - *c as f64).abs() <= CALENDAR_TOLERANCE * *c as f64);
        if let Some(c) = nearest {
            *p = c;
        }
    }
    periods.dedup();
    periods
}

/// Autocorrelation of `y` (already centred) at `lag`.
fn acf(y: &[f64], lag: usize, var: f64) -> f64 {
    if lag >= y.len() || var <= 0.0 {
        return 0.0;
    }
    let s = lagged_product(y, lag);
    s / (y.len() - lag) as f64 / var
}

/// `Σₜ y[t]·y[t + lag]`, summed directly (`lag` below `y`'s length).
fn lagged_product(y: &[f64], lag: usize) -> f64 {
    y.iter().zip(&y[lag..]).map(|(a, b)| a * b).sum()
}

/// Most lags whose lagged products [`lagged_products`] sums directly: past
/// this many, one pass over the series per lag costs more than the FFT.
const DIRECT_LAGS: usize = 32;

/// Sums of lagged products `Σₜ y[t]·y[t + k]` of `y` for every lag `k` in
/// `0..=max_lag` (up to the series' length): the autocovariances every lag
/// below a season, which Theta's seasonality test reads. A few lags are
/// summed directly; many go through the FFT (the autocorrelation is the
/// inverse transform of the power spectrum), where a daily season of
/// one-minute samples would take 1,440 passes over four days of points
/// (a full fit of `theta` took 12 ms, nearly all of it here).
pub(super) fn lagged_products(y: &[f64], max_lag: usize) -> Vec<f64> {
    use rustfft::{FftPlanner, num_complex::Complex};
    use std::cell::RefCell;
    thread_local! {
        // Plans (and their twiddle factors) kept per length, per thread.
        static PLANNER: RefCell<FftPlanner<f64>> = RefCell::new(FftPlanner::new());
    }
    let n = y.len();
    if n == 0 {
        return Vec::new();
    }
    let lags = max_lag.min(n - 1) + 1;
    if lags <= DIRECT_LAGS {
        return (0..lags).map(|k| lagged_product(y, k)).collect();
    }
    // Zero padding past `n + lags` keeps the circular products of the
    // transform from wrapping into the lags asked for.
    let size = (n + lags).next_power_of_two();
    let mut buf: Vec<Complex<f64>> = y
        .iter()
        .map(|v| Complex::new(*v, 0.0))
        .chain(std::iter::repeat(Complex::new(0.0, 0.0)))
        .take(size)
        .collect();
    let (forward, inverse) =
        PLANNER.with_borrow_mut(|p| (p.plan_fft_forward(size), p.plan_fft_inverse(size)));
    forward.process(&mut buf);
    for c in &mut buf {
        *c = Complex::new(c.norm_sqr(), 0.0);
    }
    inverse.process(&mut buf);
    buf[..lags].iter().map(|c| c.re / size as f64).collect()
}

/// `y` minus its least-squares line.
fn detrend(y: &[f64]) -> Vec<f64> {
    let n = y.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        sxy += (i as f64 - mx) * (v - my);
        sxx += (i as f64 - mx).powi(2);
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    y.iter()
        .enumerate()
        .map(|(i, v)| v - my - b * (i as f64 - mx))
        .collect()
}

/// Variances of the differences between points `lag` apart, for every
/// lag up to a longest one: smallest at the lag where the series is most
/// like itself shifted. Unlike the autocorrelation, whose peak at a long
/// period is so flat that any trend left over (a line fitted over a
/// non-whole number of cycles leaves one) pulls it several lags off
/// (1,435 rather than 1,440 for a daily sine sampled every minute over a
/// week), it is blind to a linear trend, and the end of a partial cycle
/// only scales it.
///
/// Each lag's sums come from prefix sums of the values and their squares
/// and from the lagged products ([`lagged_products`], through the FFT):
/// detection asks for hundreds of lags around each of up to six candidate
/// periods, and a pass over the series per lag was 8 % of `auto`'s fit.
struct DiffVars {
    /// `sums[k]`: the first `k` values' sum.
    sums: Vec<f64>,
    /// `squares[k]`: the first `k` values' sum of squares.
    squares: Vec<f64>,
    /// `Σₜ y[t]·y[t + k]` for each lag `k` up to the longest.
    products: Vec<f64>,
}

impl DiffVars {
    /// The sums for lags up to `max_lag` of `y`.
    fn new(y: &[f64], max_lag: usize) -> DiffVars {
        // Differences do not see the level, and the sums cancel least
        // around 0.
        let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
        let y: Vec<f64> = y.iter().map(|v| v - mean).collect();
        let y = &y[..];
        let prefix = |f: fn(f64) -> f64| {
            std::iter::once(0.0)
                .chain(y.iter().scan(0.0, move |acc, v| {
                    *acc += f(*v);
                    Some(*acc)
                }))
                .collect()
        };
        DiffVars {
            sums: prefix(|v| v),
            squares: prefix(|v| v * v),
            products: lagged_products(y, max_lag),
        }
    }

    /// The variance of the differences at `lag`; infinite for lag 0 and
    /// past the series or the longest lag.
    fn at(&self, lag: usize) -> f64 {
        let n = self.sums.len() - 1;
        if lag == 0 || lag >= n || lag >= self.products.len() {
            return f64::INFINITY;
        }
        let m = n - lag;
        // Differences y[t + lag] - y[t] for t in 0..m: their sum, and the
        // sum of their squares (y[lag..]'s squares, y[..m]'s, and twice
        // the lagged product between).
        let s = (self.sums[n] - self.sums[lag]) - self.sums[m];
        let s2 = (self.squares[n] - self.squares[lag]) + self.squares[m] - 2.0 * self.products[lag];
        let m = m as f64;
        s2 / m - (s / m).powi(2)
    }
}

/// The lag in `lo..=hi` where the series is most like itself shifted
/// (smallest [`DiffVars::at`]), with its autocorrelation.
fn best_lag(y: &[f64], var: f64, diffs: &DiffVars, lo: usize, hi: usize) -> Option<(usize, f64)> {
    let l = (lo..=hi)
        .map(|l| (l, diffs.at(l)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?
        .0;
    Some((l, acf(y, l, var)))
}

/// Lags at which [`dips_before`] looks for the autocorrelation's trough.
const DIP_LAGS: usize = 16;

/// Whether the autocorrelation falls below half of `at_p` (its value at
/// lag `p`) somewhere before `p` (checked at [`DIP_LAGS`] evenly spread
/// lags). A season's autocorrelation dips between its peaks (to about
/// minus its peak for a sine), while that of a smooth series (a slow
/// cycle sampled finely, a trend, a random walk) falls steadily from lag
/// 0, so its short lags correlate almost perfectly and look like periods
/// of 2 or 4 points though they are not.
fn dips_before(y: &[f64], var: f64, p: usize, at_p: f64) -> bool {
    let mut lags: Vec<usize> = (1..DIP_LAGS)
        .map(|k| (p * k / DIP_LAGS).max(1))
        .filter(|l| *l < p)
        .collect();
    lags.dedup();
    lags.iter().any(|l| acf(y, *l, var) < at_p / 2.0)
}

/// Classical decomposition's seasonal indices of `y` at period `m`, by
/// position in the cycle counted from `y`'s first value: the centred
/// moving average (2×m when `m` is even) as the trend, the ratios
/// (`multiplicative`) or differences to it averaged by position and
/// normalised to a mean of 1 or 0. Used by `theta` to adjust a series and
/// by `holt_winters` to start its seasonal states.
pub(super) fn classical_indices(y: &[f64], m: usize, multiplicative: bool) -> Vec<f64> {
    let n = y.len();
    let half = m / 2;
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    // The moving average's inner terms (those of full weight), summed
    // anew once a cycle and moved on by one point in between: one pass
    // over the series rather than one per point (a daily season of
    // one-minute samples is 1,440 terms), with rounding that cannot build
    // up over more than a cycle.
    let inner = |t: usize| {
        if m % 2 == 0 {
            t + 1 - half..t + half
        } else {
            t - half..t + half + 1
        }
    };
    let mut window = 0.0;
    for t in half..n.saturating_sub(half) {
        let span = inner(t);
        if (t - half) % m == 0 {
            window = y[span].iter().sum::<f64>();
        } else {
            window += y[span.end - 1] - y[span.start - 1];
        }
        let trend = if m % 2 == 0 {
            (0.5 * y[t - half] + window + 0.5 * y[t + half]) / m as f64
        } else {
            window / m as f64
        };
        let d = if multiplicative {
            y[t] / trend
        } else {
            y[t] - trend
        };
        if d.is_finite() {
            sums[t % m] += d;
            counts[t % m] += 1;
        }
    }
    let neutral = if multiplicative { 1.0 } else { 0.0 };
    let mut idx: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| if *c > 0 { s / *c as f64 } else { neutral })
        .collect();
    let mean = idx.iter().sum::<f64>() / m as f64;
    for i in &mut idx {
        if multiplicative {
            *i /= mean;
        } else {
            *i -= mean;
        }
    }
    idx
}

/// Seasonal periods of a regularly sampled series, shortest first: at
/// most two, the second a multiple of the first (a week of days). Empty
/// when the series shows no clear seasonality.
pub fn detect(values: &[f64]) -> Vec<usize> {
    let n = values.len();
    if n < 24 || values.iter().any(|v| !v.is_finite()) {
        return Vec::new();
    }
    let y = detrend(values);
    let var = y.iter().map(|v| v * v).sum::<f64>() / n as f64;
    if var <= 0.0 {
        return Vec::new();
    }
    let max_period = ((n as f64 / MIN_CYCLES) as usize).max(2);
    let pg = PeriodogramDetector::builder()
        .min_period(2)
        .max_period(max_period as u32)
        .build()
        .periodogram(&y);
    let mut peaks: Vec<(u32, f64)> = pg
        .periods
        .iter()
        .copied()
        .zip(pg.powers.iter().copied())
        .collect();
    peaks.sort_by(|a, b| b.1.total_cmp(&a.1));
    // Lags within 20 % of each of the strongest peaks.
    let ranges: Vec<(usize, usize)> = peaks
        .iter()
        .take(6)
        .map(|(p, _)| {
            let p = *p as usize;
            let lo = ((p as f64 * 0.8).floor() as usize).max(2);
            let hi = ((p as f64 * 1.2).ceil() as usize).min(max_period);
            (lo, hi)
        })
        .filter(|(lo, hi)| lo <= hi)
        .collect();
    let diffs = DiffVars::new(&y, ranges.iter().map(|r| r.1).max().unwrap_or(0));
    let mut found: Vec<(usize, f64)> = ranges
        .iter()
        .filter_map(|&(lo, hi)| best_lag(&y, var, &diffs, lo, hi))
        .filter(|(p, a)| *a >= MIN_ACF && dips_before(&y, var, *p, *a))
        .collect();
    let Some(best) = found.iter().map(|f| f.1).max_by(f64::total_cmp) else {
        return Vec::new();
    };
    // Multiples of a period correlate as well as the period itself: take
    // the shortest that is nearly as good as the best.
    found.sort_by_key(|f| f.0);
    let Some(&(p1, _)) = found.iter().find(|f| f.1 >= 0.9 * best) else {
        return Vec::new();
    };
    let mut periods = vec![p1];
    // A longer season on top (weekly over daily): remove the first
    // season's profile, then look at multiples of it.
    let mut profile = vec![(0.0, 0usize); p1];
    for (i, v) in y.iter().enumerate() {
        profile[i % p1].0 += v;
        profile[i % p1].1 += 1;
    }
    let rest: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, v)| v - profile[i % p1].0 / profile[i % p1].1 as f64)
        .collect();
    let rvar = rest.iter().map(|v| v * v).sum::<f64>() / n as f64;
    // Only when the first season leaves a real share of the variance.
    if rvar > 0.05 * var {
        let second = (2..)
            .map(|k| k * p1)
            .take_while(|l| *l <= max_period)
            .map(|l| (l, acf(&rest, l, rvar)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((p2, a)) = second
            && a >= MIN_ACF
        {
            periods.push(p2);
        }
    }
    periods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_sums_give_the_moving_average_and_differences_of_direct_ones() {
        let y = wave(1000, &[(57, 1.0)], 1.0);
        for m in [2, 3, 12, 24, 25, 144, 333] {
            for multiplicative in [false, true] {
                // Each point's centred moving average summed from scratch.
                let half = m / 2;
                let (mut sums, mut counts) = (vec![0.0; m], vec![0usize; m]);
                for t in half..y.len() - half {
                    let trend = if m % 2 == 0 {
                        (0.5 * y[t - half]
                            + y[t + 1 - half..t + half].iter().sum::<f64>()
                            + 0.5 * y[t + half])
                            / m as f64
                    } else {
                        y[t - half..=t + half].iter().sum::<f64>() / m as f64
                    };
                    sums[t % m] += if multiplicative {
                        y[t] / trend
                    } else {
                        y[t] - trend
                    };
                    counts[t % m] += 1;
                }
                let direct: Vec<f64> = sums
                    .iter()
                    .zip(&counts)
                    .map(|(s, c)| s / *c as f64)
                    .collect();
                let mean = direct.iter().sum::<f64>() / m as f64;
                let got = classical_indices(&y, m, multiplicative);
                for (k, (g, d)) in got.iter().zip(&direct).enumerate() {
                    let want = if multiplicative { d / mean } else { d - mean };
                    assert!((g - want).abs() < 1e-12, "m {m} index {k}: {g} vs {want}");
                }
            }
        }
        // A level far from 0, where the sums cancel most.
        let z: Vec<f64> = y.iter().map(|v| v + 1e4).collect();
        for (y, max_lag) in [(&y, 999), (&y, 20), (&z, 999)] {
            let diffs = DiffVars::new(y, max_lag);
            for lag in [1, 5, 8, 9, 17, 20, 500, 998, 999] {
                if lag > max_lag {
                    assert_eq!(diffs.at(lag), f64::INFINITY);
                    continue;
                }
                let want = direct_diff_var(y, lag);
                let got = diffs.at(lag);
                assert!(
                    (got - want).abs() < 1e-9 * want.max(1.0),
                    "lag {lag}: {got} vs {want}"
                );
            }
            assert_eq!(diffs.at(0), f64::INFINITY);
            assert_eq!(diffs.at(1000), f64::INFINITY);
        }
    }

    #[test]
    fn lagged_products_through_the_fft_are_the_direct_sums() {
        for (n, max_lag) in [
            (1, 5),
            (7, 40),
            (100, 33),
            (500, 250),
            (1000, 999),
            (5761, 1440),
        ] {
            let y = wave(n, &[(57, 1.0)], 1.0);
            let mean = y.iter().sum::<f64>() / n as f64;
            let y: Vec<f64> = y.iter().map(|v| v - mean).collect();
            let got = lagged_products(&y, max_lag);
            assert_eq!(got.len(), max_lag.min(n - 1) + 1, "n {n}");
            let scale = got[0];
            for (k, g) in got.iter().enumerate() {
                let want: f64 = y.iter().zip(&y[k..]).map(|(a, b)| a * b).sum();
                assert!(
                    (g - want).abs() <= 1e-10 * scale,
                    "n {n} lag {k}: {g} vs {want}"
                );
            }
        }
        assert!(lagged_products(&[], 3).is_empty());
    }

    #[test]
    fn the_best_lag_is_the_one_direct_sums_give() {
        let mut walk = 0.0;
        let walk: Vec<f64> = wave(3000, &[], 1.0)
            .iter()
            .map(|u| {
                walk += u - 50.0;
                walk
            })
            .collect();
        let series = [
            wave(10_080, &[(1440, 10.0)], 1.0),
            wave(10_080, &[(1440, 10.0), (60, 2.0)], 8.0),
            wave(2000, &[(24, 3.0), (168, 5.0)], 2.0),
            wave(2000, &[], 1.0),
            walk,
        ];
        for y in &series {
            let y = detrend(y);
            let var = y.iter().map(|v| v * v).sum::<f64>() / y.len() as f64;
            let diffs = DiffVars::new(&y, y.len() / 2);
            for (lo, hi) in [(2, 30), (19, 29), (134, 202), (1152, 1728)] {
                if hi > y.len() / 2 {
                    continue;
                }
                let want = (lo..=hi)
                    .map(|l| (l, direct_diff_var(&y, l)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .unwrap()
                    .0;
                assert_eq!(best_lag(&y, var, &diffs, lo, hi).unwrap().0, want);
            }
        }
    }

    /// The variance of the differences `lag` apart, summed point by point.
    fn direct_diff_var(y: &[f64], lag: usize) -> f64 {
        let d: Vec<f64> = y.iter().zip(&y[lag..]).map(|(a, b)| b - a).collect();
        let k = d.len() as f64;
        let mean = d.iter().sum::<f64>() / k;
        d.iter().map(|v| v * v).sum::<f64>() / k - mean * mean
    }

    fn wave(n: usize, periods: &[(usize, f64)], noise: f64) -> Vec<f64> {
        let mut s: u64 = 7;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let mut v = 50.0 + 0.02 * i as f64 + noise * u;
                for (p, a) in periods {
                    v += a * (std::f64::consts::TAU * i as f64 / *p as f64).sin();
                }
                v
            })
            .collect()
    }

    #[test]
    fn the_last_answer_is_given_again_only_for_the_same_points() {
        let sampled = |y: Vec<f64>| -> Vec<Point> {
            y.iter()
                .enumerate()
                .map(|(i, v)| Point {
                    t: i as i64 * 3_600_000,
                    v: *v,
                })
                .collect()
        };
        let daily = sampled(wave(500, &[(24, 10.0)], 4.0));
        let weekly = sampled(wave(500, &[(7, 10.0)], 4.0));
        let noise = sampled(wave(500, &[], 4.0));
        let mut one_off = daily.clone();
        one_off[250].v += 1e3;
        for (points, step) in [
            (&daily, 3_600_000),
            (&daily, 3_600_000),
            (&weekly, 3_600_000),
            (&daily, 3_600_000),
            (&noise, 3_600_000),
            (&one_off, 3_600_000),
            (&daily, 60_000),
            (&daily, 3_600_000),
        ] {
            let want = detect_sampled_afresh(points, step);
            assert_eq!(detect_sampled(points, step), want);
        }
        assert_eq!(detect_sampled(&daily, 3_600_000), vec![24]);
        assert_eq!(detect_sampled(&weekly, 3_600_000), vec![7]);
        assert!(detect_sampled(&noise, 3_600_000).is_empty());
    }

    #[test]
    fn finds_exact_periods() {
        assert_eq!(detect(&wave(500, &[(24, 10.0)], 4.0)), vec![24]);
        assert_eq!(detect(&wave(300, &[(7, 3.0)], 1.0)), vec![7]);
        assert_eq!(
            detect(&wave(1000, &[(24, 10.0), (168, 10.0)], 2.0)),
            vec![24, 168]
        );
        assert!(detect(&wave(500, &[], 4.0)).is_empty());
        // A daily cycle sampled every minute, with little noise: its short
        // lags correlate almost perfectly, yet are no period; the period
        // found is within a few points of the day, and taken as the day
        // when the sampling interval is known.
        let daily = wave(7 * 1440, &[(1440, 10.0)], 2.0);
        let found = detect(&daily);
        assert!(
            found.len() == 1 && found[0].abs_diff(1440) <= 5,
            "{found:?}"
        );
        let points: Vec<Point> = daily
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                t: i as i64 * 60_000,
                v: *v,
            })
            .collect();
        assert_eq!(detect_sampled(&points, 60_000), vec![1440]);
        // Nor are a random walk's.
        let mut level = 0.0;
        let walk: Vec<f64> = wave(2000, &[], 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                level += v - 50.0 - 0.02 * i as f64;
                level
            })
            .collect();
        assert!(detect(&walk).is_empty(), "{:?}", detect(&walk));
        assert!(detect(&[1.0; 100]).is_empty());
        assert!(detect(&[1.0, 2.0]).is_empty());
    }

    #[test]
    fn regular_grid_fills_gaps() {
        let pts: Vec<Point> = [(0, 1.0), (10, 2.0), (40, 5.0), (51, 6.0)]
            .iter()
            .map(|(t, v)| Point { t: *t, v: *v })
            .collect();
        assert_eq!(regular(&pts, 10), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(regular(&[], 10).is_empty());
    }
}
