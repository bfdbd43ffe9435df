//! `imd-analyzer --config.file=F`: the analyzer proper. Reads the configured
//! sources on a schedule, runs the engine, evaluates alerting rules, sends
//! alerts to Alertmanager, saves model state, and serves `/metrics` and the
//! page.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use axum::routing::get;
use imd_exporter::exposition::Family;
use imd_exporter::scrape::merge;

use crate::alert::rules::{Firing, Rules};
use crate::alert::{Alert, Notifier, NotifierConfig};
use crate::config::{Config, SourceConfig, SourceKind};
use crate::emit::{self, Naming, selfmetrics::SelfMetrics};
use crate::engine::persist::StateFile;
use crate::engine::{Engine, EngineOptions};
use crate::read::Source;
use crate::read::http::ReadStats;
use crate::read::promql::{PromqlOptions, QueryRange};
use crate::read::remote::{RemoteRead, RemoteReadOptions, ResponseMode};
use crate::schedule::{now_ms, spawn_every};
use crate::web::page;

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The configuration file.
    pub config_file: PathBuf,
    /// Addresses to serve on.
    pub listen: Vec<String>,
    /// Optional exporter-toolkit web config.
    pub web_config: Option<PathBuf>,
    /// Data directory for saved model state.
    pub storage_path: PathBuf,
    /// URL under which users reach this analyzer (alert links).
    pub external_url: String,
    /// Score from which the page highlights a series.
    pub page_threshold: f64,
}

/// A configured source and the counters of its reads.
struct NamedSource {
    name: String,
    source: Box<dyn Source>,
    stats: Arc<ReadStats>,
}

struct Shared {
    engine: Mutex<Engine>,
    sources: Vec<NamedSource>,
    rules: Mutex<Option<Rules>>,
    notifier: Option<Notifier>,
    stats: SelfMetrics,
    ready: AtomicBool,
    naming: Naming,
    state: StateFile,
    settings: RunSettings,
    infer_every: Duration,
    last_save: Mutex<Instant>,
}

/// Builds everything the configuration describes, failing with a message
/// that names the key when a part cannot be built. Used by `--check-config`
/// too, so that a config that checks is one that starts.
fn build(settings: &RunSettings) -> anyhow::Result<(Config, Vec<NamedSource>, Option<Notifier>)> {
    let config = Config::load(&settings.config_file)?;
    let file = settings.config_file.display();
    let mut sources = Vec::new();
    for (i, s) in config.sources.iter().enumerate() {
        let (source, stats) =
            build_source(s).map_err(|e| anyhow::anyhow!("{file}: key `sources[{i}]`: {e}"))?;
        sources.push(NamedSource {
            name: s.name.clone(),
            source,
            stats,
        });
    }
    let notifier = match &config.alerting {
        None => None,
        Some(a) => {
            let nc = NotifierConfig {
                alertmanagers: a.alertmanagers.clone(),
                resend_delay: a.resend_delay,
                eval_interval: config.global.infer_every,
                resolved_retention: a.resolved_retention,
                queue_capacity: a.queue_capacity,
                external_labels: a.external_labels.clone(),
                ..NotifierConfig::default()
            };
            Some(Notifier::new(nc).map_err(|e| anyhow::anyhow!("{file}: key `alerting`: {e}"))?)
        }
    };
    Ok((config, sources, notifier))
}

fn build_source(s: &SourceConfig) -> anyhow::Result<(Box<dyn Source>, Arc<ReadStats>)> {
    let base = s.url.trim_end_matches('/');
    Ok(match s.kind {
        SourceKind::RemoteRead => {
            let mut o = RemoteReadOptions::new(format!("{base}/api/v1/read"));
            o.http = s.http.clone();
            o.mode = if s.prefer_streamed {
                ResponseMode::PreferStreamed
            } else {
                ResponseMode::Samples
            };
            let r = RemoteRead::new(&o)?;
            let stats = r.stats();
            (Box::new(r), stats)
        }
        SourceKind::QueryRange => {
            let mut o = PromqlOptions::new(base, s.step);
            o.http = s.http.clone();
            let r = QueryRange::new(&o)?;
            let stats = r.stats();
            (Box::new(r), stats)
        }
    })
}

/// Checks the configuration (and web config) and says what would run.
pub fn check(settings: &RunSettings) -> anyhow::Result<String> {
    let (config, sources, notifier) = build(settings)?;
    if let Some(f) = &settings.web_config {
        imd_exporter::web::WebConfig::load(f)?;
    }
    drop(notifier);
    Ok(format!(
        "configuration OK: {} source(s) ({}), {} quer(ies), {} alerting rule(s)",
        sources.len(),
        sources
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        config.queries.len(),
        config.alerting.as_ref().map(|a| a.rules.len()).unwrap_or(0)
    ))
}

/// Runs the analyzer until `shutdown` completes, then saves model state.
pub async fn run(
    settings: RunSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (config, sources, notifier) = build(&settings)?;
    let state = StateFile::in_dir(&settings.storage_path)
        .map_err(|e| anyhow::anyhow!("--storage.path {}: {e}", settings.storage_path.display()))?;
    let options = EngineOptions {
        lookback_ms: config.global.lookback_delta.as_millis() as i64,
        fit_every_ms: Some(config.global.fit_every.as_millis() as i64),
        concurrency: config.global.concurrency,
    };
    let mut engine = Engine::with_sources(config.queries(), options);
    let restored = engine.restore(state.load());
    tracing::info!(
        sources = sources.len(),
        queries = config.queries.len(),
        restored_series = restored,
        "starting imd-analyzer"
    );
    let rules = config
        .alerting
        .as_ref()
        .map(|a| Rules::new(a.rules.clone(), a.external_labels.clone()));
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        sources,
        rules: Mutex::new(rules),
        notifier,
        stats: SelfMetrics::default(),
        ready: AtomicBool::new(false),
        naming: Naming {
            vmanomaly: config.output.vmanomaly_names,
        },
        state,
        infer_every: config.global.infer_every,
        settings: settings.clone(),
        last_save: Mutex::new(Instant::now()),
    });

    let cycles = spawn_every(shared.infer_every, shared.clone(), cycle);

    let app = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .with_state(shared.clone())
        .merge(imd_exporter::web::health_routes({
            let s = shared.clone();
            move || s.ready.load(Ordering::Relaxed)
        }));
    let served = imd_exporter::web::serve(
        app,
        &settings.listen,
        settings.web_config.as_deref(),
        shutdown,
    )
    .await;
    cycles.abort();
    let st = shared.clone();
    let _ = tokio::task::spawn_blocking(move || save_state(&st)).await;
    served
}

fn save_state(st: &Shared) {
    let snapshot = st
        .engine
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .snapshot();
    let n = snapshot.len();
    match st.state.save(snapshot) {
        Ok(()) => {
            tracing::debug!(series = n, path = %st.state.path().display(), "model state saved")
        }
        Err(e) => {
            tracing::error!(error = %e, path = %st.state.path().display(), "cannot save model state")
        }
    }
    *st.last_save.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
}

/// One cycle: read and analyse, evaluate rules, tell the notifier, and
/// save state every few minutes.
fn cycle(st: &Shared) {
    let started = Instant::now();
    let now = now_ms();
    let sources: Vec<&dyn Source> = st.sources.iter().map(|s| s.source.as_ref()).collect();
    let mut engine = st.engine.lock().unwrap_or_else(|e| e.into_inner());
    let report = engine.cycle_sources(&sources, now);
    let firing = st
        .rules
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .map(|r| r.evaluate(&engine, now));
    let series = engine.tracked().len();
    drop(engine);
    if let (Some(firing), Some(notifier)) = (firing, &st.notifier) {
        let alerts: Vec<Alert> = firing
            .into_iter()
            .map(|f| to_alert(f, &st.settings.external_url))
            .collect();
        let r = notifier.sync(jiff::Timestamp::now(), alerts);
        for (key, why) in r.rejected {
            tracing::warn!(alert = ?key, reason = %why, "alert rejected");
        }
    }
    st.stats
        .record(&report, started.elapsed().as_secs_f64(), now, series);
    st.ready.store(true, Ordering::Relaxed);
    let due = st
        .last_save
        .lock()
        .map(|t| t.elapsed() >= Duration::from_secs(300))
        .unwrap_or(true);
    if due {
        save_state(st);
    }
    tracing::debug!(
        series = report.series,
        points = report.points,
        fitted = report.fitted,
        "cycle done"
    );
}

fn to_alert(f: Firing, external_url: &str) -> Alert {
    let query = f.labels.get("query").cloned().unwrap_or_default();
    Alert {
        starts_at: jiff::Timestamp::from_millisecond(f.active_since_ms)
            .unwrap_or_else(|_| jiff::Timestamp::now()),
        ends_at: None,
        generator_url: format!("{}/#q-{query}", external_url.trim_end_matches('/')),
        labels: f.labels,
        annotations: f.annotations,
    }
}

async fn metrics(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut fams = emit::families(
        &st.engine.lock().unwrap_or_else(|e| e.into_inner()),
        st.naming,
    );
    fams.extend(st.stats.families());
    fams.extend(read_families(&st.sources));
    if let Some(n) = &st.notifier {
        fams.extend(n.metrics().families());
    }
    fams.extend(imd_exporter::collectors::process_self::families());
    imd_exporter::web::exposition_response(&headers, &merge(fams))
}

/// Per-source read counters as families.
fn read_families(sources: &[NamedSource]) -> Vec<Family> {
    let mut reads = Family::counter("imd_read_requests_total", "Reads sent to the source.");
    let mut bytes = Family::counter(
        "imd_read_bytes_total",
        "Bytes received from the source (as sent).",
    );
    let mut samples = Family::counter(
        "imd_read_samples_total",
        "Samples decoded from the source's answers.",
    );
    let mut series = Family::counter("imd_read_series_total", "Series returned by the source.");
    let mut seconds = Family::counter(
        "imd_read_duration_seconds_total",
        "Time spent reading from the source.",
    );
    let mut errors = Family::counter("imd_read_errors_total", "Failed reads by kind.");
    for s in sources {
        let snap = s.stats.snapshot();
        let l = [("source", s.name.as_str())];
        reads.push(l, snap.reads as f64);
        bytes.push(l, snap.bytes_read as f64);
        samples.push(l, snap.samples_decoded as f64);
        series.push(l, snap.series_returned as f64);
        seconds.push(l, snap.read_seconds);
        for (kind, n) in snap.errors {
            errors.push([("source", s.name.as_str()), ("kind", kind)], n as f64);
        }
    }
    vec![reads, bytes, samples, series, seconds, errors]
}

async fn index(State(st): State<Arc<Shared>>) -> Html<String> {
    let engine = st.engine.lock().unwrap_or_else(|e| e.into_inner());
    let sources: Vec<&str> = st.sources.iter().map(|s| s.name.as_str()).collect();
    Html(page::render(
        &engine,
        &page::PageInfo {
            title: "imd-analyzer",
            subtitle: &format!(
                "Reading {} every {}; configuration {}.",
                sources.join(", "),
                crate::query::prom_duration(st.infer_every),
                st.settings.config_file.display()
            ),
            refresh_seconds: st.infer_every.as_secs().clamp(5, 60),
            threshold: st.settings.page_threshold,
            extra_html: "",
        },
    ))
}
