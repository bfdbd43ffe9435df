//! A report as one self-contained HTML file: inline style, inline SVG
//! charts, no scripts, no outside resources. Every label, name and note is
//! escaped (labels come from monitored systems).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Durations, Report};
use crate::web::page::escape;

/// Series rows listed at most (the JSON has them all).
const MAX_SERIES_ROWS: usize = 100;

fn labels(l: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = l
        .iter()
        .filter(|(k, _)| k.as_str() != "query")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    escape(&format!("{{{}}}", inner.join(", ")))
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into())
}

/// `1h 5m`, `42s`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "—".into();
    }
    let s = secs.round() as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .take(2)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

fn durations(d: &Durations) -> String {
    match (d.median_seconds, d.mean_seconds, d.max_seconds) {
        (Some(med), Some(mean), Some(max)) => format!(
            "median {} · mean {} · longest {} ({} alerts)",
            duration(med),
            duration(mean),
            duration(max),
            d.count
        ),
        _ => "—".into(),
    }
}

/// Renders the report.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>imd report {from} – {to}</title><style>{STYLE}</style></head><body>\
         <h1>imd report</h1><p class=\"muted\">{from} – {to} · anomalous from score {th} · generated {gen}</p>",
        from = escape(&r.from),
        to = escape(&r.to),
        th = r.threshold,
        gen = escape(&r.generated_at),
    );
    let s = &r.summary;
    let a = &r.alert_summary;
    let _ = write!(
        h,
        "<div class=\"cards\"><div><b>{}</b>series</div><div><b>{}</b>anomalous series</div>\
         <div><b>{}</b>events</div><div><b>{}</b>hosts</div><div><b>{}</b>alerts</div>\
         <div><b>{}</b>median time to acknowledge</div><div><b>{}</b>median time to resolve</div></div>",
        s.series,
        s.anomalous_series,
        s.events,
        s.hosts,
        a.alerts,
        a.time_to_acknowledge
            .median_seconds
            .map(duration)
            .unwrap_or_else(|| "—".into()),
        a.time_to_resolve
            .median_seconds
            .map(duration)
            .unwrap_or_else(|| "—".into()),
    );
    for n in &r.notes {
        let _ = write!(h, "<p class=\"note\">{}</p>", escape(n));
    }

    h.push_str("<h2 id=\"hosts\">Anomalies by host</h2>");
    if r.hosts.is_empty() {
        h.push_str("<p class=\"muted\">No series.</p>");
    } else {
        h.push_str("<table><tr><th>host</th><th>series</th><th>anomalous series</th><th>events</th><th>anomalous points</th><th>max score</th></tr>");
        for x in &r.hosts {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(if x.host.is_empty() { "(none)" } else { &x.host }),
                x.series,
                x.anomalous_series,
                x.events,
                x.anomalous_points,
                opt(x.max_score)
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2 id=\"series\">Anomalies by series</h2>");
    if r.series.is_empty() {
        h.push_str("<p class=\"muted\">No series.</p>");
    } else {
        h.push_str("<table><tr><th>query</th><th>series</th><th>model</th><th>points</th><th>anomalous</th><th>events</th><th>max score</th><th>at</th></tr>");
        for x in r.series.iter().take(MAX_SERIES_ROWS) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&x.query),
                labels(&x.labels),
                escape(&x.model),
                x.points,
                x.anomalous_points,
                x.events,
                opt(x.max_score),
                escape(x.max_score_at.as_deref().unwrap_or("—"))
            );
        }
        h.push_str("</table>");
        if r.series.len() > MAX_SERIES_ROWS {
            let _ = write!(
                h,
                "<p class=\"muted\">{} more series in the JSON report.</p>",
                r.series.len() - MAX_SERIES_ROWS
            );
        }
    }

    h.push_str("<h2 id=\"events\">Top events</h2>");
    if r.top_events.is_empty() {
        h.push_str("<p class=\"muted\">No anomalous events.</p>");
    }
    for (i, e) in r.top_events.iter().enumerate() {
        let _ = write!(
            h,
            "<div class=\"event\" id=\"event-{n}\"><h3>{n}. {q} <code>{l}</code></h3>\
             <p>{start} – {end} ({dur}, {pts} points) · peak score <b>{peak:.4}</b> at {peak_at} · \
             value {v} · expected {ex} [{lo} … {hi}]</p>{svg}\
             <p class=\"legend\"><span class=\"k v\"></span>value <span class=\"k e\"></span>expected \
             <span class=\"k b\"></span>expected band <span class=\"k s\"></span>anomaly score (line: threshold)</p></div>",
            n = i + 1,
            q = escape(&e.query),
            l = labels(&e.labels),
            start = escape(&e.start),
            end = escape(&e.end),
            dur = duration(e.duration_seconds),
            pts = e.points,
            peak = e.peak_score,
            peak_at = escape(&e.peak_at),
            v = opt(e.value_at_peak),
            ex = opt(e.expected_at_peak),
            lo = opt(e.lower_at_peak),
            hi = opt(e.upper_at_peak),
            svg = super::svg::chart(&e.chart),
        );
    }

    h.push_str("<h2 id=\"accuracy\">Forecast accuracy</h2>");
    if r.accuracy.is_empty() {
        h.push_str("<p class=\"muted\">No forecast could be compared with the value at its target time.</p>");
    } else {
        h.push_str("<table><tr><th>query</th><th>horizon</th><th>model</th><th>series</th><th>forecasts compared</th><th>MAE</th><th>sMAPE</th><th>inside bounds</th></tr>");
        for x in &r.accuracy {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.2}%</td><td>{}</td></tr>",
                escape(&x.query),
                escape(&x.horizon),
                escape(&x.model),
                x.series,
                x.pairs,
                x.mae,
                x.smape_percent,
                x.coverage_percent
                    .map(|c| format!("{c:.1}%"))
                    .unwrap_or_else(|| "—".into())
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2 id=\"alerts\">Alerts</h2>");
    let _ = write!(
        h,
        "<p>{} alerts fired, {} acknowledged, {} resolved, {} escalated.<br>\
         Time to acknowledge: {}.<br>Time to resolve: {}.</p>",
        a.alerts,
        a.acknowledged,
        a.resolved,
        a.escalated,
        durations(&a.time_to_acknowledge),
        durations(&a.time_to_resolve)
    );
    if !r.alerts.is_empty() {
        h.push_str("<table><tr><th>alert</th><th>labels</th><th>fired</th><th>level</th><th>acknowledged</th><th>time to ack</th><th>resolved</th><th>time to resolve</th></tr>");
        for x in &r.alerts {
            let mut rest = x.labels.clone();
            rest.remove("alertname");
            let ack = match (&x.acknowledged_at, &x.acknowledged_by) {
                (Some(at), Some(by)) => format!(
                    "{at} by {by} ({})",
                    x.acknowledged_via.as_deref().unwrap_or("")
                ),
                _ => "—".into(),
            };
            let res = match (&x.resolved_at, &x.resolved_by) {
                (Some(at), Some(by)) => format!("{at} by {by}"),
                _ => "—".into(),
            };
            let level = match &x.policy {
                Some(p) => format!("{} ({p})", x.max_level),
                None => x.max_level.to_string(),
            };
            let _ = write!(
                h,
                "<tr><td><b>{}</b></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&x.alertname),
                labels(&rest),
                escape(&x.fired_at),
                escape(&level),
                escape(&ack),
                x.time_to_acknowledge_seconds
                    .map(duration)
                    .unwrap_or_else(|| "—".into()),
                escape(&res),
                x.time_to_resolve_seconds
                    .map(duration)
                    .unwrap_or_else(|| "—".into()),
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:62em;color:#222;padding:0 1em}\
table{border-collapse:collapse;margin-bottom:1em}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}\
.muted{color:#888}.note{background:#fff3cd;padding:4px 8px}code{font-size:12px}\
.cards{display:flex;flex-wrap:wrap;gap:8px}.cards div{border:1px solid #ddd;border-radius:4px;padding:6px 12px;font-size:12px;color:#555}\
.cards b{display:block;font-size:20px;color:#222}.event{margin-bottom:1.5em}.event h3{font-size:15px;margin-bottom:2px}\
.event p{font-size:13px;margin:2px 0}.legend .k{display:inline-block;width:12px;height:4px;margin:0 4px 2px 10px}\
.k.v{background:#08519c}.k.e{background:#3182bd}.k.b{background:#9ecae1;height:8px}.k.s{background:#d62728}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_notes_and_names_are_escaped() {
        use crate::model::Point;
        use crate::report::compute::{Params, build};
        use crate::report::data::SeriesHistory;
        let pts = |v: &[f64]| -> Vec<Point> {
            v.iter()
                .enumerate()
                .map(|(i, v)| Point {
                    t: i as i64 * 60_000,
                    v: *v,
                })
                .collect()
        };
        let key: BTreeMap<String, String> = [
            (
                "instance".to_string(),
                "<img src=x onerror=alert(1)>".to_string(),
            ),
            ("query".to_string(), "q\"><script>".to_string()),
        ]
        .into();
        let s = SeriesHistory {
            key,
            model: "<b>m</b>".into(),
            values: pts(&[1.0, 5.0, 1.0]),
            score: pts(&[0.1, 1.0, 0.1]),
            expected: pts(&[1.0; 3]),
            lower: pts(&[0.0; 3]),
            upper: pts(&[2.0; 3]),
            forecasts: BTreeMap::new(),
        };
        let r = build(
            &Params {
                from_ms: 0,
                to_ms: 120_000,
                threshold: 0.99,
                top: 5,
            },
            &[s],
            &[],
            vec!["<script>note</script>".into()],
        );
        let h = render(&r);
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(!h.contains("<b>m</b>"), "{h}");
        assert!(h.contains("&lt;img src=x onerror=alert(1)&gt;"), "{h}");
        assert_eq!(h.matches("<svg").count(), 1);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(3900.0), "1h 5m");
        assert_eq!(duration(90_061.0), "1d 1h");
    }
}
