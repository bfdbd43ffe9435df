//! The overview page at `/`: what is analysed, with which models, the
//! current scores and forecasts, and a small chart per series.

use std::fmt::Write;

use crate::alert::lifecycle::AlertView;
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
    let stale = tracked.iter().filter(|t| !engine.is_fresh(t)).count();
    let anomalous = tracked
        .iter()
        .filter(|t| engine.is_fresh(t) && t.score() >= info.threshold)
        .count();
    let _ = write!(
        h,
        "<p class=\"summary\"><b>{}</b> series under analysis, <b>{}</b> anomalous now (score ≥ {}){}.</p>",
        tracked.len() - stale,
        anomalous,
        info.threshold,
        if stale > 0 {
            format!(
                ", <b>{stale}</b> stale (no recent point; kept until they return or leave the source's answers)"
            )
        } else {
            String::new()
        }
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
                .map(|t| format!(" · threshold {:?} {}", t.direction, t.label()))
                .map(|s| escape(&s))
                .unwrap_or_default(),
        );
        h.push_str("<table><tr><th>series</th><th>value</th><th>score</th><th>forecast</th><th>time to threshold</th><th>last minutes</th></tr>");
        let mut any = false;
        for t in tracked.iter().filter(|t| t.query == qi) {
            any = true;
            row(&mut h, t, q, info.threshold, engine.is_fresh(t));
        }
        if !any {
            h.push_str("<tr><td colspan=\"6\" class=\"muted\">no series yet</td></tr>");
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"muted\"><a href=\"/metrics\">/metrics</a> · <a href=\"/-/healthy\">/-/healthy</a> · <a href=\"/-/ready\">/-/ready</a></p></body></html>");
    h
}

/// One series' row; a stale series (no point within the lookback) shows
/// its last value greyed, without a current score or forecast.
fn row(h: &mut String, t: &Tracked, q: &crate::query::Query, threshold: f64, fresh: bool) {
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
    if !fresh {
        let since = t
            .recent
            .back()
            .and_then(|p| jiff::Timestamp::from_millisecond(p.0).ok())
            .map(|d| d.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr class=\"stale\"><td><code>{}{{{}}}</code></td><td>{}</td><td colspan=\"3\">stale: no point since {}</td><td>{}</td></tr>",
            escape(name),
            escape(&labels.join(", ")),
            t.value().map(num).unwrap_or_default(),
            escape(&since),
            sparkline(t, threshold)
        );
        return;
    }
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
        .and_then(|th| t.breach(&th))
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

/// Who looks at the page and what they may do there.
#[derive(Debug, Clone, Copy, Default)]
pub struct Viewer<'a> {
    /// The authenticated user (then the forms do not ask for a name).
    pub user: Option<&'a str>,
    /// Whether the forms are shown (operators).
    pub can_act: bool,
    /// The CSRF token the forms carry (see `web::access`).
    pub token: &'a str,
    /// Grafana's base URL (`output.grafana_url`), for links.
    pub grafana_url: Option<&'a str>,
}

/// Renders the "Active alerts" section for an anonymous operator without
/// Grafana links (see [`render_alerts_for`]).
pub fn render_alerts(views: &[AlertView]) -> String {
    render_alerts_for(
        views,
        &Viewer {
            can_act: true,
            ..Viewer::default()
        },
    )
}

/// A link into one of imd's Grafana dashboards (`grafana/dashboards`),
/// with the series' `job`, `instance` and `query` as the dashboard's
/// variables; `None` without a Grafana URL.
pub fn grafana_link<'a>(
    base: Option<&str>,
    dashboard: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let base = base?.trim_end_matches('/');
    let mut url = format!("{base}/d/{dashboard}/{dashboard}?");
    let mut vars = Vec::new();
    for (k, v) in labels {
        if matches!(k, "job" | "instance" | "query") {
            vars.push(format!("var-{k}={}", url_encode(v)));
        }
    }
    url.push_str(&vars.join("&"));
    Some(url)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The "Current anomalies" section: series scoring at least `threshold`
/// now, highest first, each with its small chart and a link into Grafana's
/// anomaly explorer.
pub fn render_anomalies(engine: &Engine, threshold: f64, grafana_url: Option<&str>) -> String {
    let mut hot: Vec<&Tracked> = engine
        .published()
        .into_iter()
        .filter(|t| t.score() >= threshold)
        .collect();
    hot.sort_by(|a, b| b.score().total_cmp(&a.score()));
    let mut h = String::from("<h2 id=\"anomalies\">Current anomalies</h2>");
    if hot.is_empty() {
        h.push_str("<p class=\"muted\">No series is anomalous now.</p>");
        return h;
    }
    h.push_str("<table class=\"anomalies\"><tr><th>query</th><th>series</th><th>value</th><th>score</th><th>last minutes</th><th></th></tr>");
    let queries = engine.queries();
    for t in hot {
        let q = queries
            .get(t.query)
            .map(|q| q.config.name.as_str())
            .unwrap_or("");
        let name = t
            .labels
            .iter()
            .find(|(k, _)| k == "__name__")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let labels: Vec<String> = t
            .labels
            .iter()
            .filter(|(k, _)| k != "__name__")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        let link = grafana_link(
            grafana_url,
            "imd-anomaly-explorer",
            t.labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("query", q)]),
        )
        .map(|u| format!("<a href=\"{}\">Grafana</a>", escape(&u)))
        .unwrap_or_default();
        let _ = write!(
            h,
            "<tr class=\"hot\"><td>{}</td><td><code>{}{{{}}}</code></td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            escape(q),
            escape(name),
            escape(&labels.join(", ")),
            t.value().map(num).unwrap_or_default(),
            t.score(),
            sparkline(t, threshold),
            link
        );
    }
    h.push_str("</table>");
    h
}

/// Renders the "Active alerts" section: every alert the lifecycle knows
/// (open and recently resolved), with forms posting to `/alerts/ack` and
/// `/alerts/resolve` for the open ones when the viewer may act (each with
/// the CSRF token, and a name field only when nobody is logged in). Every
/// label, annotation and name is escaped.
pub fn render_alerts_for(views: &[AlertView], viewer: &Viewer) -> String {
    let mut h = String::from("<h2 id=\"alerts\">Active alerts</h2>");
    match (viewer.user, viewer.can_act) {
        (Some(u), true) => {
            let _ = write!(
                h,
                "<p class=\"muted\">Signed in as <b>{}</b> (operator).</p>",
                escape(u)
            );
        }
        (u, false) => {
            let _ = write!(
                h,
                "<p class=\"muted\">{} Read-only: acknowledging and resolving need the operator role.</p>",
                u.map(|u| format!("Signed in as <b>{}</b> (viewer).", escape(u)))
                    .unwrap_or_default()
            );
        }
        (None, true) => {}
    }
    if views.is_empty() {
        h.push_str("<p class=\"muted\">No alerts.</p>");
        return h;
    }
    h.push_str(
        "<table><tr><th>alert</th><th>series</th><th>since</th><th>level</th>\
         <th>acknowledged</th><th>resolved</th><th>actions</th></tr>",
    );
    for v in views {
        let name = v.labels.get("alertname").map(String::as_str).unwrap_or("");
        let labels: Vec<String> = v
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        let level = match &v.escalation.policy {
            Some(p) => format!("{} ({p})", v.escalation.level),
            None => v.escalation.level.to_string(),
        };
        let ack = v
            .acknowledged
            .as_ref()
            .map(|a| format!("by {} at {}", a.by, a.at))
            .unwrap_or_else(|| "—".into());
        let resolved = v
            .resolved
            .as_ref()
            .map(|r| format!("by {} at {}", r.by, r.at))
            .unwrap_or_else(|| "—".into());
        let class = match v.state.as_str() {
            "firing" => "hot",
            _ => "",
        };
        let _ = write!(
            h,
            "<tr class=\"{class}\" id=\"alert-{fp}\"><td><b>{}</b><br><span class=\"muted\">{}</span></td>\
             <td><code>{{{}}}</code></td><td>{}</td><td class=\"level\">{}</td><td class=\"ack\">{}</td>\
             <td class=\"resolved\">{}</td><td>",
            escape(name),
            escape(&v.state),
            escape(&labels.join(", ")),
            escape(&v.active_at),
            escape(&level),
            escape(&ack),
            escape(&resolved),
            fp = escape(&v.fingerprint),
        );
        if let Some(u) = grafana_link(
            viewer.grafana_url,
            "imd-anomaly-explorer",
            v.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ) {
            let _ = write!(h, "<a href=\"{}\">Grafana</a> ", escape(&u));
        }
        if v.resolved.is_none() && viewer.can_act {
            for (path, label, show) in [
                ("/alerts/ack", "Acknowledge", v.acknowledged.is_none()),
                ("/alerts/resolve", "Resolve", true),
            ] {
                if !show {
                    continue;
                }
                let name = if viewer.user.is_some() {
                    ""
                } else {
                    "<input name=\"by\" placeholder=\"your name\" required maxlength=\"256\" size=\"10\">"
                };
                let _ = write!(
                    h,
                    "<form method=\"post\" action=\"{path}\" class=\"act\">\
                     <input type=\"hidden\" name=\"fingerprint\" value=\"{}\">\
                     <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">{name}\
                     <button type=\"submit\">{label}</button></form>",
                    escape(&v.fingerprint),
                    escape(viewer.token),
                );
            }
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</table>");
    h
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
tr.stale{color:#999}.muted{color:#888}.q{color:#444;font-size:13px}code{font-size:12px}form.act{display:inline;margin-right:4px}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_series_are_shown_as_stale_and_never_as_anomalous() {
        use crate::engine::EngineOptions;
        use crate::engine::tests::{load, query};
        use crate::read::store::Store;
        let opts = EngineOptions {
            lookback_ms: 10_000,
            ..EngineOptions::default()
        };
        let mut e = Engine::new(vec![query(None)], opts);
        let store = Store::new(3_600_000, 10_000);
        for i in 0..40 {
            let v = 1.0 + 0.1 * (i % 3) as f64;
            store.ingest(i * 1000, &[load("a", v), load("gone", v)]);
        }
        // `gone` stops while far off its usual level: a high last score.
        store.ingest(40_000, &[load("a", 1.1), load("gone", 90.0)]);
        e.cycle(&store, 40_000);
        let info = PageInfo {
            title: "t",
            subtitle: "s",
            refresh_seconds: 5,
            threshold: 0.99,
            extra_html: "",
        };
        let before = render(&e, &info);
        assert!(
            before.contains("<b>2</b> series under analysis, <b>1</b> anomalous"),
            "{before}"
        );
        for i in 41..60 {
            store.ingest(i * 1000, &[load("a", 1.0 + 0.1 * (i % 3) as f64)]);
        }
        e.cycle(&store, 59_000);
        let h = render(&e, &info);
        assert!(
            h.contains("<b>1</b> series under analysis, <b>0</b> anomalous"),
            "{h}"
        );
        assert!(h.contains("<b>1</b> stale"), "{h}");
        assert_eq!(h.matches("<tr class=\"stale\">").count(), 1, "{h}");
        assert!(
            h.contains("stale: no point since 1970-01-01 00:00:40 UTC"),
            "{h}"
        );
        assert!(!h.contains("class=\"hot\""), "{h}");
        let hot = render_anomalies(&e, 0.99, None);
        assert!(hot.contains("No series is anomalous now"), "{hot}");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }

    fn view(value: &str, by: &str) -> AlertView {
        use crate::alert::escalation::{AckVia, Acknowledgement};
        use crate::alert::lifecycle::EscalationView;
        AlertView {
            labels: [
                ("alertname".to_string(), "ImdAnomaly".to_string()),
                ("instance".to_string(), value.to_string()),
            ]
            .into(),
            annotations: Default::default(),
            fingerprint: "00000000000000ab".into(),
            state: "acknowledged".into(),
            active_at: "2026-01-01T00:00:00Z".into(),
            fired_at: "2026-01-01T00:00:00Z".into(),
            escalation: EscalationView {
                policy: Some("critical".into()),
                level: 2,
                level_since: "2026-01-01T00:01:00Z".into(),
                next_level_at: None,
                levels: Vec::new(),
            },
            acknowledged: Some(Acknowledgement {
                by: by.into(),
                at: "2026-01-01T00:02:00Z".parse().unwrap(),
                comment: String::new(),
                via: AckVia::Api,
                silence_id: None,
            }),
            resolved: None,
            silences: Vec::new(),
            generator_url: String::new(),
        }
    }

    #[test]
    fn alert_section_escapes_labels_and_names() {
        let h = render_alerts(&[view("<script>alert(1)</script>", "<b>mallory</b>")]);
        assert!(!h.contains("<script>"), "{h}");
        assert!(!h.contains("<b>mallory"), "{h}");
        assert!(
            h.contains("instance=&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"),
            "{h}"
        );
        assert!(
            h.contains("by &lt;b&gt;mallory&lt;/b&gt; at 2026-01-01T00:02:00Z"),
            "{h}"
        );
        assert!(h.contains("<td class=\"level\">2 (critical)</td>"), "{h}");
        // Acknowledged and open: only the resolve form remains.
        assert!(!h.contains("action=\"/alerts/ack\""), "{h}");
        assert!(h.contains("action=\"/alerts/resolve\""), "{h}");
        assert!(
            h.contains("name=\"fingerprint\" value=\"00000000000000ab\""),
            "{h}"
        );
        assert!(render_alerts(&[]).contains("No alerts."));
    }

    #[test]
    fn forms_carry_the_token_and_viewers_get_none() {
        let mut v = view("h1", "bob");
        v.acknowledged = None;
        let op = render_alerts_for(
            &[v.clone()],
            &Viewer {
                user: Some("alice"),
                can_act: true,
                token: "123.abc",
                grafana_url: Some("http://grafana:3000/"),
            },
        );
        assert!(op.contains("name=\"csrf_token\" value=\"123.abc\""), "{op}");
        assert!(
            !op.contains("name=\"by\""),
            "a logged-in user is not asked who they are"
        );
        assert!(op.contains("Signed in as <b>alice</b> (operator)"), "{op}");
        assert!(
            op.contains("href=\"http://grafana:3000/d/imd-anomaly-explorer/imd-anomaly-explorer?var-instance=h1\""),
            "{op}"
        );
        let viewer = render_alerts_for(
            &[v],
            &Viewer {
                user: Some("bob"),
                can_act: false,
                token: "123.abc",
                grafana_url: None,
            },
        );
        assert!(!viewer.contains("<form"), "{viewer}");
        assert!(viewer.contains("Read-only"), "{viewer}");
    }

    #[test]
    fn grafana_links_carry_the_dashboard_variables() {
        let u = grafana_link(
            Some("https://g.example/grafana"),
            "imd-forecasts",
            [
                ("instance", "a b:9100"),
                ("query", "load"),
                ("mode", "x"),
                ("job", "node"),
            ],
        )
        .unwrap();
        assert_eq!(
            u,
            "https://g.example/grafana/d/imd-forecasts/imd-forecasts?var-instance=a%20b%3A9100&var-query=load&var-job=node"
        );
        assert!(grafana_link(None, "imd-forecasts", []).is_none());
    }
}
