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

/// Autocorrelation of `y` (already centred) at `lag`.
fn acf(y: &[f64], lag: usize, var: f64) -> f64 {
    if lag >= y.len() || var <= 0.0 {
        return 0.0;
    }
    let s: f64 = y.iter().zip(&y[lag..]).map(|(a, b)| a * b).sum();
    s / (y.len() - lag) as f64 / var
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

/// The lag in `lo..=hi` where the autocorrelation is highest, with its value.
fn best_lag(y: &[f64], var: f64, lo: usize, hi: usize) -> Option<(usize, f64)> {
    (lo..=hi)
        .map(|l| (l, acf(y, l, var)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
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
    let mut found: Vec<(usize, f64)> = peaks
        .iter()
        .take(6)
        .filter_map(|(p, _)| {
            let p = *p as usize;
            let lo = ((p as f64 * 0.8).floor() as usize).max(2);
            let hi = ((p as f64 * 1.2).ceil() as usize).min(max_period);
            if lo > hi {
                return None;
            }
            best_lag(&y, var, lo, hi)
        })
        .filter(|(_, a)| *a >= MIN_ACF)
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
    fn finds_exact_periods() {
        assert_eq!(detect(&wave(500, &[(24, 10.0)], 4.0)), vec![24]);
        assert_eq!(detect(&wave(300, &[(7, 3.0)], 1.0)), vec![7]);
        assert_eq!(
            detect(&wave(1000, &[(24, 10.0), (168, 10.0)], 2.0)),
            vec![24, 168]
        );
        assert!(detect(&wave(500, &[], 4.0)).is_empty());
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
