//! The overview page at `/`: what is analysed, with which models, the
//! current scores and forecasts, and a small chart per series.

use std::fmt::Write;

use crate::engine::{Engine, Tracked};
use crate::query::prom_duration;

/// Escapes text for HTML (labels are user-controlled).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the page shows besides the engine.
pub struct PageInfo<'a> {
    /// Page title.
    pub title: &'a str,
    /// One line under the title.
    pub subtitle: &'a str,
    /// Seconds between page refreshes.
    pub refresh_seconds: u64,
    /// Anomaly score from which a series is highlighted.
    pub threshold: f64,
    /// Extra HTML (already escaped) placed under the subtitle.
    pub extra_html: &'a str,
}

/// Renders the whole page.
pub fn render(engine: &Engine, info: &PageInfo) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{}\">\
         <title>{}</title><style>{}</style></head><body><h1>{}</h1><p>{}</p>{}",
        info.refresh_seconds,
        escape(info.title),
        STYLE,
        escape(info.title),
        escape(info.subtitle),
        info.extra_html
    );
    let tracked = engine.tracked();
    let anomalous: Vec<&&Tracked> = tracked
        .iter()
        .filter(|t| t.score() >= info.threshold)
        .collect();
    let _ = write!(
        h,
        "<p class=\"summary\"><b>{}</b> series under analysis, <b>{}</b> anomalous now (score ≥ {}).</p>",
        tracked.len(),
        anomalous.len(),
        info.threshold
    );
    for (qi, q) in engine.queries().iter().enumerate() {
        let c = &q.config;
        let _ = write!(
            h,
            "<h2 id=\"q-{}\">{}</h2><p class=\"q\"><code>{}{}</code> · anomaly model <b>{}</b> · forecast model <b>{}</b> · horizons {}{}</p>",
            escape(&c.name),
            escape(&c.name),
            if c.rate { "rate of " } else { "" },
            escape(&q.target.to_string()),
            escape(&c.anomaly_model),
            escape(&c.forecast_model),
            escape(
                &c.horizons
                    .iter()
                    .map(|d| prom_duration(*d))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            c.threshold
                .map(|t| format!(" · threshold {:?} {}", t.direction, t.value))
                .map(|s| escape(&s))
                .unwrap_or_default(),
        );
        h.push_str("<table><tr><th>series</th><th>value</th><th>score</th><th>forecast</th><th>time to threshold</th><th>last minutes</th></tr>");
        let mut any = false;
        for t in tracked.iter().filter(|t| t.query == qi) {
            any = true;
            row(&mut h, t, q, info.threshold);
        }
        if !any {
            h.push_str("<tr><td colspan=\"6\" class=\"muted\">no series yet</td></tr>");
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"muted\"><a href=\"/metrics\">/metrics</a> · <a href=\"/-/healthy\">/-/healthy</a> · <a href=\"/-/ready\">/-/ready</a></p></body></html>");
    h
}

fn row(h: &mut String, t: &Tracked, q: &crate::query::Query, threshold: f64) {
    let labels: Vec<String> = t
        .labels
        .iter()
        .filter(|(k, _)| k != "__name__")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    let name = t
        .labels
        .iter()
        .find(|(k, _)| k == "__name__")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let score = t.score();
    let class = if score >= threshold { "hot" } else { "" };
    let forecast = match (q.config.horizons.first(), t.recent.back()) {
        (Some(hz), Some(last)) => t
            .forecast_at(last.0 + hz.as_millis() as i64)
            .map(|(m, lo, hi)| {
                format!(
                    "{} [{} … {}] in {}",
                    num(m),
                    num(lo),
                    num(hi),
                    prom_duration(*hz)
                )
            })
            .unwrap_or_else(|| "warming up".into()),
        _ => "—".into(),
    };
    let breach = q
        .config
        .threshold
        .and_then(|th| t.breach_seconds(th.value, th.direction))
        .map(|s| {
            if s.is_infinite() {
                "not foreseen".to_string()
            } else {
                prom_duration(std::time::Duration::from_secs_f64(s))
            }
        })
        .unwrap_or_else(|| "—".into());
    let _ = write!(
        h,
        "<tr class=\"{class}\"><td><code>{}{{{}}}</code></td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(name),
        escape(&labels.join(", ")),
        t.value().map(num).unwrap_or_default(),
        score,
        escape(&forecast),
        escape(&breach),
        sparkline(t, threshold)
    );
}

/// A small SVG chart: values as a line, the forecast band ahead, and points
/// scoring above the threshold as red dots.
fn sparkline(t: &Tracked, threshold: f64) -> String {
    const W: f64 = 240.0;
    const H: f64 = 40.0;
    let pts: Vec<(i64, f64, f64)> = t
        .recent
        .iter()
        .copied()
        .filter(|p| p.1.is_finite())
        .collect();
    if pts.len() < 2 {
        return String::new();
    }
    let band: Vec<(i64, f64, f64)> = t
        .forecast
        .as_ref()
        .map(|f| {
            let span = pts[pts.len() - 1].0 - pts[0].0;
            f.t.iter()
                .zip(f.lower.iter().zip(&f.upper))
                .take_while(|(ft, _)| **ft - pts[pts.len() - 1].0 <= span / 4)
                .map(|(ft, (lo, hi))| (*ft, *lo, *hi))
                .collect()
        })
        .unwrap_or_default();
    let t0 = pts[0].0 as f64;
    let t1 = band.last().map(|b| b.0).unwrap_or(pts[pts.len() - 1].0) as f64;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in &pts {
        lo = lo.min(p.1);
        hi = hi.max(p.1);
    }
    for b in &band {
        lo = lo.min(b.1);
        hi = hi.max(b.2);
    }
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    let x = |t: f64| (t - t0) / (t1 - t0).max(1.0) * W;
    let y = |v: f64| H - 2.0 - (v - lo) / (hi - lo) * (H - 4.0);
    let mut s = format!("<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">");
    if band.len() > 1 {
        let mut d = String::new();
        for b in &band {
            let _ = write!(d, "{:.1},{:.1} ", x(b.0 as f64), y(b.2));
        }
        for b in band.iter().rev() {
            let _ = write!(d, "{:.1},{:.1} ", x(b.0 as f64), y(b.1));
        }
        let _ = write!(
            s,
            "<polygon points=\"{d}\" fill=\"#9ecae1\" opacity=\"0.6\"/>"
        );
    }
    let line: String = pts
        .iter()
        .map(|p| format!("{:.1},{:.1} ", x(p.0 as f64), y(p.1)))
        .collect();
    let _ = write!(
        s,
        "<polyline points=\"{line}\" fill=\"none\" stroke=\"#08519c\" stroke-width=\"1.2\"/>"
    );
    for p in pts.iter().filter(|p| p.2 >= threshold) {
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#d62728\"/>",
            x(p.0 as f64),
            y(p.1)
        );
    }
    s.push_str("</svg>");
    s
}

fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.2}k", v / 1e3)
    } else {
        format!("{v:.3}")
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin-bottom:1em}\
td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}tr.hot{background:#fde0dd}\
.muted{color:#888}.q{color:#444;font-size:13px}code{font-size:12px}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }
}
