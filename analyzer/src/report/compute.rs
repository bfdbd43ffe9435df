//! Turning the gathered series and alert records into a [`Report`]:
//! anomalous points and events per series and host, the top events with
//! their chart data, forecast accuracy per query and horizon, and the alert
//! history with times to acknowledge and to resolve.

use std::collections::BTreeMap;

use crate::alert::escalation::Record;
use crate::model::Point;

use super::data::SeriesHistory;
use super::{
    AccuracyRow, AlertRow, AlertSummary, ChartData, Durations, Event, HostRow, Report, SeriesRow,
    Summary,
};

/// What the report is asked for.
#[derive(Debug, Clone)]
pub struct Params {
    /// Start of the range, ms since the epoch.
    pub from_ms: i64,
    /// End of the range.
    pub to_ms: i64,
    /// Score from which a point is anomalous.
    pub threshold: f64,
    /// How many top events get a chart.
    pub top: usize,
}

/// A run of consecutive anomalous points of one series.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    start: i64,
    end: i64,
    points: usize,
    peak: f64,
    peak_at: i64,
}

/// Runs of consecutive points scoring at least `threshold`.
fn runs(score: &[Point], threshold: f64) -> Vec<Run> {
    let mut out = Vec::new();
    let mut cur: Option<Run> = None;
    for p in score {
        if p.v >= threshold {
            let r = cur.get_or_insert(Run {
                start: p.t,
                end: p.t,
                points: 0,
                peak: f64::NEG_INFINITY,
                peak_at: p.t,
            });
            r.end = p.t;
            r.points += 1;
            if p.v > r.peak {
                r.peak = p.v;
                r.peak_at = p.t;
            }
        } else if let Some(r) = cur.take() {
            out.push(r);
        }
    }
    out.extend(cur);
    out
}

/// The value of `points` at `t` (the nearest point no further than `tol`).
fn at(points: &[Point], t: i64, tol: i64) -> Option<f64> {
    let i = points.partition_point(|p| p.t < t);
    [i.checked_sub(1), Some(i)]
        .into_iter()
        .flatten()
        .filter_map(|j| points.get(j))
        .filter(|p| (p.t - t).abs() <= tol)
        .min_by_key(|p| (p.t - t).abs())
        .map(|p| p.v)
}

/// The median spacing of `points` (60 s when unknown).
fn spacing(points: &[Point]) -> i64 {
    let mut d: Vec<i64> = points.windows(2).map(|w| w[1].t - w[0].t).collect();
    if d.is_empty() {
        return 60_000;
    }
    d.sort_unstable();
    d[d.len() / 2].max(1)
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Builds the report from the series and alert records.
pub fn build(
    params: &Params,
    series: &[SeriesHistory],
    alerts: &[Record],
    notes: Vec<String>,
) -> Report {
    let mut rows = Vec::new();
    let mut events = Vec::new();
    let mut hosts: BTreeMap<String, HostRow> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        let rs = runs(&s.score, params.threshold);
        let anomalous: usize = rs.iter().map(|r| r.points).sum();
        let (max_score, max_at) = s
            .score
            .iter()
            .fold((None::<f64>, None), |(m, at), p| match m {
                Some(v) if v >= p.v => (m, at),
                _ => (Some(p.v), Some(p.t)),
            });
        rows.push(SeriesRow {
            query: s.query().to_string(),
            labels: s.key.clone(),
            host: s.host().to_string(),
            model: s.model.clone(),
            points: s.score.len(),
            anomalous_points: anomalous,
            events: rs.len(),
            max_score,
            max_score_at: max_at.map(rfc3339),
        });
        let h = hosts
            .entry(s.host().to_string())
            .or_insert_with(|| HostRow {
                host: s.host().to_string(),
                ..HostRow::default()
            });
        h.series += 1;
        h.anomalous_series += usize::from(!rs.is_empty());
        h.events += rs.len();
        h.anomalous_points += anomalous;
        if let Some(m) = max_score {
            h.max_score = Some(h.max_score.map_or(m, |x: f64| x.max(m)));
        }
        for r in rs {
            events.push((i, r));
        }
    }
    let n_events = events.len();
    // Highest peak first; then the longest; then the earliest.
    events.sort_by(|(_, a), (_, b)| {
        b.peak
            .total_cmp(&a.peak)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let top: Vec<Event> = events
        .into_iter()
        .take(params.top)
        .map(|(i, r)| event(&series[i], &r, params))
        .collect();
    rows.sort_by(|a, b| {
        b.events.cmp(&a.events).then(
            b.max_score
                .unwrap_or(0.0)
                .total_cmp(&a.max_score.unwrap_or(0.0)),
        )
    });
    let mut hosts: Vec<HostRow> = hosts.into_values().collect();
    hosts.sort_by(|a, b| b.events.cmp(&a.events).then(a.host.cmp(&b.host)));
    let alert_rows: Vec<AlertRow> = alerts.iter().map(alert_row).collect();
    let alert_summary = AlertSummary {
        alerts: alert_rows.len(),
        acknowledged: alert_rows
            .iter()
            .filter(|a| a.acknowledged_at.is_some())
            .count(),
        resolved: alert_rows
            .iter()
            .filter(|a| a.resolved_at.is_some())
            .count(),
        escalated: alert_rows.iter().filter(|a| a.max_level > 0).count(),
        time_to_acknowledge: Durations::of(
            alert_rows
                .iter()
                .filter_map(|a| a.time_to_acknowledge_seconds),
        ),
        time_to_resolve: Durations::of(alert_rows.iter().filter_map(|a| a.time_to_resolve_seconds)),
    };
    let summary = Summary {
        series: rows.len(),
        anomalous_series: rows.iter().filter(|r| r.events > 0).count(),
        anomalous_points: rows.iter().map(|r| r.anomalous_points).sum(),
        events: n_events,
        hosts: hosts.len(),
    };
    Report {
        generated_at: jiff::Timestamp::now().to_string(),
        from: rfc3339(params.from_ms),
        to: rfc3339(params.to_ms),
        threshold: params.threshold,
        summary,
        hosts,
        series: rows,
        top_events: top,
        accuracy: accuracy(series),
        alert_summary,
        alerts: alert_rows,
        notes,
    }
}

fn event(s: &SeriesHistory, r: &Run, params: &Params) -> Event {
    let step = spacing(&s.score);
    // The chart shows the event with three times its length (at least 30
    // steps) on each side, within the report's range.
    let pad = (3 * (r.end - r.start)).max(30 * step);
    let (from, to) = (
        (r.start - pad).max(params.from_ms),
        (r.end + pad).min(params.to_ms),
    );
    let within = |v: &[Point]| -> Vec<[f64; 2]> {
        v.iter()
            .filter(|p| p.t >= from && p.t <= to)
            .map(|p| [p.t as f64, p.v])
            .collect()
    };
    let tol = step;
    let band: Vec<[f64; 4]> = s
        .expected
        .iter()
        .filter(|p| p.t >= from && p.t <= to)
        .filter_map(|p| {
            Some([
                p.t as f64,
                p.v,
                at(&s.lower, p.t, tol)?,
                at(&s.upper, p.t, tol)?,
            ])
        })
        .collect();
    let vtol = spacing(&s.values);
    Event {
        query: s.query().to_string(),
        labels: s.key.clone(),
        host: s.host().to_string(),
        start: rfc3339(r.start),
        end: rfc3339(r.end),
        duration_seconds: (r.end - r.start) as f64 / 1000.0,
        points: r.points,
        peak_score: r.peak,
        peak_at: rfc3339(r.peak_at),
        value_at_peak: at(&s.values, r.peak_at, vtol),
        expected_at_peak: at(&s.expected, r.peak_at, tol),
        lower_at_peak: at(&s.lower, r.peak_at, tol),
        upper_at_peak: at(&s.upper, r.peak_at, tol),
        chart: ChartData {
            from_ms: from,
            to_ms: to,
            event_from_ms: r.start,
            event_to_ms: r.end,
            threshold: params.threshold,
            values: within(&s.values),
            expected: band,
            score: within(&s.score),
        },
    }
}

/// Forecast accuracy per query, horizon and model: each published forecast
/// (stamped when published, for the time `horizon` later) against the
/// analysed value at that time.
fn accuracy(series: &[SeriesHistory]) -> Vec<AccuracyRow> {
    #[derive(Default)]
    struct Acc {
        series: usize,
        n: usize,
        abs: f64,
        smape: f64,
        covered: usize,
        bounded: usize,
    }
    let mut acc: BTreeMap<(String, String, String), Acc> = BTreeMap::new();
    for s in series {
        if s.values.is_empty() {
            continue;
        }
        // A forecast's target time matches the value nearest to it, within
        // half a step: a target past the last value has none.
        let tol = spacing(&s.values) / 2;
        for (h, f) in &s.forecasts {
            let Ok(d) = humantime::parse_duration(h) else {
                continue;
            };
            let ms = d.as_millis() as i64;
            let a = acc
                .entry((s.query().to_string(), h.clone(), f.model.clone()))
                .or_default();
            a.series += 1;
            let ftol = spacing(&f.mean);
            for p in &f.mean {
                let Some(actual) = at(&s.values, p.t + ms, tol) else {
                    continue;
                };
                a.n += 1;
                a.abs += (p.v - actual).abs();
                let denom = p.v.abs() + actual.abs();
                if denom > 0.0 {
                    a.smape += 2.0 * (p.v - actual).abs() / denom;
                }
                if let (Some(lo), Some(hi)) = (at(&f.lower, p.t, ftol), at(&f.upper, p.t, ftol)) {
                    a.bounded += 1;
                    a.covered += usize::from(actual >= lo && actual <= hi);
                }
            }
        }
    }
    acc.into_iter()
        .filter(|(_, a)| a.n > 0)
        .map(|((query, horizon, model), a)| AccuracyRow {
            query,
            horizon,
            model,
            series: a.series,
            pairs: a.n,
            mae: a.abs / a.n as f64,
            smape_percent: 100.0 * a.smape / a.n as f64,
            coverage_percent: (a.bounded > 0).then(|| 100.0 * a.covered as f64 / a.bounded as f64),
        })
        .collect()
}

fn alert_row(r: &Record) -> AlertRow {
    let fired = r.first_fired();
    let secs = |t: jiff::Timestamp| {
        ((t.as_millisecond() - fired.as_millisecond()) as f64 / 1000.0).max(0.0)
    };
    AlertRow {
        alertname: r.labels.get("alertname").cloned().unwrap_or_default(),
        labels: r.labels.clone(),
        state: r.state().to_string(),
        policy: r.policy.clone(),
        max_level: r.level(),
        fired_at: fired.to_string(),
        acknowledged_at: r.acknowledged.as_ref().map(|a| a.at.to_string()),
        acknowledged_by: r.acknowledged.as_ref().map(|a| a.by.clone()),
        acknowledged_via: r.acknowledged.as_ref().map(|a| {
            match a.via {
                crate::alert::escalation::AckVia::Silence => "silence",
                crate::alert::escalation::AckVia::Api => "api",
            }
            .to_string()
        }),
        time_to_acknowledge_seconds: r.acknowledged.as_ref().map(|a| secs(a.at)),
        resolved_at: r.resolved.as_ref().map(|x| x.at.to_string()),
        resolved_by: r.resolved.as_ref().map(|x| x.by.clone()),
        resolved_manually: r.resolved.as_ref().map(|x| x.manual),
        time_to_resolve_seconds: r.resolved.as_ref().map(|x| secs(x.at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::ForecastHistory;

    fn pts(v: &[f64]) -> Vec<Point> {
        v.iter()
            .enumerate()
            .map(|(i, v)| Point {
                t: i as i64 * 60_000,
                v: *v,
            })
            .collect()
    }

    #[test]
    fn events_are_runs_above_the_threshold() {
        let r = runs(&pts(&[0.1, 0.995, 0.999, 0.2, 0.1, 0.991]), 0.99);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].start, r[0].end, r[0].points), (60_000, 120_000, 2));
        assert_eq!((r[0].peak, r[0].peak_at), (0.999, 120_000));
        assert_eq!((r[1].start, r[1].end), (300_000, 300_000));
        assert!(runs(&pts(&[0.1, 0.2]), 0.99).is_empty());
    }

    #[test]
    fn report_counts_events_hosts_and_accuracy() {
        let mut key = BTreeMap::new();
        key.insert("instance".to_string(), "h1".to_string());
        key.insert("query".to_string(), "load".to_string());
        let s = SeriesHistory {
            key,
            model: "mad".into(),
            values: pts(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            score: pts(&[0.1, 0.995, 0.999, 0.2, 0.1, 0.991]),
            expected: pts(&[1.0; 6]),
            lower: pts(&[0.0; 6]),
            upper: pts(&[2.0; 6]),
            forecasts: [(
                "1m".to_string(),
                ForecastHistory {
                    model: "ets".into(),
                    // Forecast for t+1m: 2, 3, 3, 5, 7 against 2, 3, 4, 5, 6.
                    mean: pts(&[2.0, 3.0, 3.0, 5.0, 7.0]),
                    lower: pts(&[0.0; 5]),
                    upper: pts(&[3.0; 5]),
                },
            )]
            .into(),
        };
        let p = Params {
            from_ms: 0,
            to_ms: 300_000,
            threshold: 0.99,
            top: 1,
        };
        let r = build(&p, &[s], &[], vec![]);
        assert_eq!(r.summary.events, 2);
        assert_eq!(r.summary.anomalous_points, 3);
        assert_eq!(r.hosts[0].host, "h1");
        assert_eq!(r.hosts[0].events, 2);
        assert_eq!(r.top_events.len(), 1);
        let e = &r.top_events[0];
        assert_eq!(e.peak_score, 0.999);
        assert_eq!(e.value_at_peak, Some(3.0));
        assert_eq!(e.expected_at_peak, Some(1.0));
        assert_eq!(e.chart.expected.len(), 6);
        let a = &r.accuracy[0];
        assert_eq!(
            (a.horizon.as_str(), a.model.as_str(), a.pairs),
            ("1m", "ets", 5)
        );
        assert!((a.mae - 2.0 / 5.0).abs() < 1e-12, "{}", a.mae);
        // Actuals 2, 3, 4, 5, 6 within [0, 3]: two of five.
        assert_eq!(a.coverage_percent, Some(40.0));
    }
}
