//! `imd-analyzer --config.file=F`: the analyzer proper. Reads the configured
//! sources on a schedule, runs the engine, evaluates alerting rules, sends
//! alerts to Alertmanager, saves model state, and serves `/metrics` and the
//! page.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use imd_exporter::exposition::Family;
use imd_exporter::scrape::merge;
use imd_exporter::web::Identity;
use imd_exporter::web::Reloader;

use crate::alert::lifecycle::{ActionError, ActionRequest, Lifecycle};
use crate::alert::rules::{Firing, Rules};
use crate::alert::{Alert, Notifier, NotifierConfig};
use crate::config::{AlertRuleConfig, Config, SourceConfig, SourceKind};
use crate::emit::remote_write::RemoteWriter;
use crate::emit::{self, Naming, selfmetrics::SelfMetrics};
use crate::engine::persist::StateFile;
use crate::engine::{Engine, EngineOptions};
use crate::read::Source;
use crate::read::http::ReadStats;
use crate::read::promql::{PromqlOptions, QueryRange};
use crate::read::remote::{RemoteRead, RemoteReadOptions, ResponseMode};
use crate::report::schedule::ReportMetrics;
use crate::schedule::now_ms;
use crate::shard::Shard;
use crate::web::access::{self, Csrf};
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
    /// This replica's part of the series (`None`: all of them).
    pub shard: Option<Shard>,
    /// `--web.enable-lifecycle`: whether `POST /-/reload` is served.
    pub lifecycle: bool,
}

/// A configured source and the counters of its reads.
struct NamedSource {
    name: String,
    source: Box<dyn Source>,
    stats: Arc<ReadStats>,
}

/// Everything the configuration file describes; replaced on reload.
struct Live {
    engine: Engine,
    sources: Vec<NamedSource>,
    rules: Option<Rules>,
    /// What `rules` was built from, to keep its pending state across a
    /// reload that does not change it.
    rules_config: Option<RulesConfig>,
    notifier: Option<Notifier>,
    notifier_config: Option<NotifierConfig>,
    writers: Vec<RemoteWriter>,
    naming: Naming,
    infer_every: Duration,
    /// `output.grafana_url`, for the page's links.
    grafana_url: Option<String>,
    /// `global.max_emitted_series`.
    max_emitted: usize,
}

/// The alerting rules and the external labels they add.
type RulesConfig = (Vec<AlertRuleConfig>, BTreeMap<String, String>);

struct Shared {
    live: Mutex<Live>,
    stats: SelfMetrics,
    ready: AtomicBool,
    state: StateFile,
    settings: RunSettings,
    last_save: Mutex<Instant>,
    /// Escalation, acknowledgement, resolution (`/api/v1/alerts`).
    lifecycle: Arc<Lifecycle>,
    /// The key of the page's CSRF tokens.
    csrf: Csrf,
    /// Counters of the scheduled reports.
    reports: Arc<ReportMetrics>,
}

/// Builds everything the configuration describes but the notifier, failing
/// with a message that names the file and key when a part cannot be built.
/// Used by `--check-config` and reloads too, so that a config that checks is
/// one that starts.
fn build(settings: &RunSettings) -> anyhow::Result<Built> {
    let config = Config::load(&settings.config_file)?;
    let file = settings.config_file.display();
    let mut sources = Vec::new();
    for (i, s) in config.sources.iter().enumerate() {
        let (source, stats) = build_source(s, config.global.max_samples_per_read)
            .map_err(|e| anyhow::anyhow!("{file}: key `sources[{i}]`: {e}"))?;
        sources.push(NamedSource {
            name: s.name.clone(),
            source,
            stats,
        });
    }
    let notifier_config = config.alerting.as_ref().map(|a| NotifierConfig {
        alertmanagers: a.alertmanagers.clone(),
        resend_delay: a.resend_delay,
        eval_interval: config.global.infer_every,
        resolved_retention: a.resolved_retention,
        queue_capacity: a.queue_capacity,
        external_labels: a.external_labels.clone(),
        ..NotifierConfig::default()
    });
    let mut writers = Vec::new();
    for (i, w) in config.output.remote_write.iter().enumerate() {
        writers.push(
            RemoteWriter::start(w)
                .map_err(|e| anyhow::anyhow!("{file}: key `output.remote_write[{i}].{e}"))?,
        );
    }
    Ok(Built {
        config,
        sources,
        notifier_config,
        writers,
    })
}

/// Everything the configuration describes, built, but the notifier (which
/// a reload keeps when its settings are unchanged).
struct Built {
    config: Config,
    sources: Vec<NamedSource>,
    notifier_config: Option<NotifierConfig>,
    writers: Vec<RemoteWriter>,
}

/// Starts the notifier the configuration asks for, if any.
fn build_notifier(
    settings: &RunSettings,
    config: Option<&NotifierConfig>,
) -> anyhow::Result<Option<Notifier>> {
    let file = settings.config_file.display();
    config
        .cloned()
        .map(Notifier::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{file}: key `alerting`: {e}"))
}

fn engine_options(config: &Config, settings: &RunSettings) -> EngineOptions {
    EngineOptions {
        lookback_ms: config.global.lookback_delta.as_millis() as i64,
        fit_every_ms: Some(config.global.fit_every.as_millis() as i64),
        concurrency: config.global.concurrency,
        shard: settings.shard.map(|s| s.pair()),
        max_series: Some(config.global.max_series_per_query),
    }
}

fn rules_config(config: &Config) -> Option<RulesConfig> {
    config
        .alerting
        .as_ref()
        .map(|a| (a.rules.clone(), a.external_labels.clone()))
}

impl Live {
    fn new(built: Built, notifier: Option<Notifier>, settings: &RunSettings) -> Live {
        let Built {
            config,
            sources,
            notifier_config,
            writers,
        } = built;
        let rules_config = rules_config(&config);
        Live {
            engine: Engine::with_sources(config.queries(), engine_options(&config, settings)),
            sources,
            rules: rules_config.clone().map(|(r, l)| Rules::new(r, l)),
            rules_config,
            notifier,
            notifier_config,
            writers,
            naming: Naming {
                vmanomaly: config.output.vmanomaly_names,
            },
            infer_every: config.global.infer_every,
            grafana_url: config.output.grafana_url.clone(),
            max_emitted: config.global.max_emitted_series,
        }
    }
}

fn build_source(
    s: &SourceConfig,
    max_samples: usize,
) -> anyhow::Result<(Box<dyn Source>, Arc<ReadStats>)> {
    let base = s.url.trim_end_matches('/');
    Ok(match s.kind {
        SourceKind::RemoteRead => {
            let mut o = RemoteReadOptions::new(format!("{base}/api/v1/read"));
            o.http = s.http.clone();
            o.max_samples = max_samples;
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
            o.query_offset = s.query_offset;
            let r = QueryRange::new(&o)?;
            let stats = r.stats();
            (Box::new(r), stats)
        }
    })
}

/// Checks the configuration (and web config) and says what would run.
pub fn check(settings: &RunSettings) -> anyhow::Result<String> {
    let Built {
        config,
        sources,
        notifier_config,
        ..
    } = build(settings)?;
    drop(build_notifier(settings, notifier_config.as_ref())?);
    if let Some(f) = &settings.web_config {
        imd_exporter::web::WebConfig::load(f)?;
    }
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
/// `SIGHUP` and (with `--web.enable-lifecycle`) `POST /-/reload` read the
/// configuration file again.
pub async fn run(
    settings: RunSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let built = build(&settings)?;
    let notifier = build_notifier(&settings, built.notifier_config.as_ref())?;
    let state = StateFile::in_dir(&settings.storage_path)
        .map_err(|e| anyhow::anyhow!("--storage.path {}: {e}", settings.storage_path.display()))?;
    let (n_sources, n_queries) = (built.config.sources.len(), built.config.queries.len());
    let lifecycle = Arc::new(
        Lifecycle::new(
            built.config.alerting.as_ref(),
            built.config.global.infer_every,
            &settings.storage_path,
        )
        .map_err(|e| anyhow::anyhow!("{}: key `alerting`: {e}", settings.config_file.display()))?,
    );
    let mut live = Live::new(built, notifier, &settings);
    let restored = live.engine.restore(state.load());
    tracing::info!(
        sources = n_sources,
        queries = n_queries,
        restored_series = restored,
        shard = %settings.shard.map(|s| format!("{} of {}", s.index, s.count)).unwrap_or_else(|| "all".into()),
        "starting imd-analyzer"
    );
    let shared = Arc::new(Shared {
        live: Mutex::new(live),
        stats: SelfMetrics::default(),
        ready: AtomicBool::new(false),
        state,
        settings: settings.clone(),
        last_save: Mutex::new(Instant::now()),
        lifecycle: lifecycle.clone(),
        csrf: Csrf::new()
            .map_err(|e| anyhow::anyhow!("reading /dev/urandom for the page's CSRF key: {e}"))?,
        reports: Arc::new(ReportMetrics::default()),
    });
    let reloader = Reloader::new("imd_analyzer", {
        let st = shared.clone();
        move || reload(&st)
    });
    let sighup = reloader.on_sighup()?;
    let cycles = spawn_cycles(shared.clone());
    let poller = lifecycle.clone().spawn_poller();
    let reports = crate::report::schedule::spawn(
        settings.config_file.clone(),
        settings.storage_path.clone(),
        shared.reports.clone(),
    );

    let app = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/alerts/ack", post(form_ack))
        .route("/alerts/resolve", post(form_resolve))
        .with_state((shared.clone(), reloader.clone()))
        .merge(reloader.route(settings.lifecycle))
        .merge(lifecycle.routes())
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
    sighup.abort();
    cycles.abort();
    poller.abort();
    reports.abort();
    let st = shared.clone();
    let _ = tokio::task::spawn_blocking(move || save_state(&st)).await;
    served
}

/// Runs [`cycle`] on a blocking thread every `infer_every` (read anew after
/// each cycle, so that a reload changes it), the first at once; a cycle
/// that overruns delays the next, and a panicking one is logged.
fn spawn_cycles(st: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let started = tokio::time::Instant::now();
            let s = st.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || cycle(&s)).await {
                tracing::error!(error = %e, "cycle panicked; continuing");
            }
            let every = st
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .infer_every;
            tokio::time::sleep_until(started + every).await;
        }
    })
}

/// Reads the configuration file again and puts it in force; a file that
/// does not load or build is rejected and the running configuration stays.
/// Sources and remote-write receivers are rebuilt (their counters start
/// again). The engine is kept whole when the queries and engine settings
/// are unchanged; otherwise series whose query name and models are
/// unchanged keep their model state through a snapshot. Alert rules keep
/// their pending state when unchanged, and the notifier (with its queues)
/// when its settings are; a replaced notifier is handed the alerts firing
/// now, so that they resolve normally.
///
/// When the engine was replaced, a cycle runs at once on its own thread,
/// so that the series' scores are published again without waiting for the
/// next tick (cycles never overlap: each holds the configuration's lock).
fn reload(st: &Arc<Shared>) -> anyhow::Result<()> {
    let built = build(&st.settings)?;
    let current = st
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .notifier_config
        .clone();
    // Reloads never run two at a time (`Reloader` sees to it), so `current`
    // is still in force when the new parts are swapped in below.
    let fresh_notifier = if built.notifier_config != current {
        Some(build_notifier(
            &st.settings,
            built.notifier_config.as_ref(),
        )?)
    } else {
        None
    };
    st.lifecycle
        .reconfigure(built.config.alerting.as_ref())
        .map_err(|e| {
            anyhow::anyhow!("{}: key `alerting`: {e}", st.settings.config_file.display())
        })?;
    let Built {
        config,
        sources,
        notifier_config,
        writers,
    } = built;
    let options = engine_options(&config, &st.settings);
    let queries = config.queries();
    let new_rules = rules_config(&config);
    let mut live = st.live.lock().unwrap_or_else(|e| e.into_inner());
    let restored = if live.engine.same_setup(&queries, &options) {
        None
    } else {
        let mut engine = Engine::with_sources(queries, options);
        let n = engine.restore(live.engine.snapshot());
        live.engine = engine;
        Some(n)
    };
    if new_rules != live.rules_config {
        live.rules = new_rules.clone().map(|(r, l)| Rules::new(r, l));
        live.rules_config = new_rules;
    }
    let old_notifier = match fresh_notifier {
        Some(new) => {
            if let (Some(old), Some(new)) = (&live.notifier, &new) {
                let firing: Vec<Alert> = old
                    .alerts()
                    .into_iter()
                    .filter(|a| a.ends_at.is_none())
                    .collect();
                new.sync(jiff::Timestamp::now(), firing);
            }
            live.notifier_config = notifier_config;
            std::mem::replace(&mut live.notifier, new)
        }
        None => None,
    };
    live.sources = sources;
    let old_writers = std::mem::replace(&mut live.writers, writers);
    live.naming = Naming {
        vmanomaly: config.output.vmanomaly_names,
    };
    live.infer_every = config.global.infer_every;
    live.grafana_url = config.output.grafana_url.clone();
    live.max_emitted = config.global.max_emitted_series;
    drop(live);
    tracing::info!(
        file = %st.settings.config_file.display(),
        sources = config.sources.len(),
        queries = config.queries.len(),
        engine_kept = restored.is_none(),
        restored_series = restored.unwrap_or(0),
        notifier_replaced = old_notifier.is_some(),
        "new configuration in force"
    );
    // The old notifier and writers make a last attempt to deliver what they
    // hold as they are dropped: off the lock.
    drop(old_notifier);
    drop(old_writers);
    if restored.is_some() {
        let st = st.clone();
        let spawned = std::thread::Builder::new()
            .name("imd-reload-cycle".into())
            .spawn(move || cycle(&st));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot run a cycle after the reload; the next tick will");
        }
    }
    Ok(())
}

fn save_state(st: &Shared) {
    // Each series' state is made, written and dropped in turn while the
    // engine is held (as a cycle holds it): a copy of every series' state
    // made first took 2 GB for 10,000 series (README "Benchmarks").
    let live = st.live.lock().unwrap_or_else(|e| e.into_inner());
    let saved = st.state.save(live.engine.saved());
    drop(live);
    crate::engine::memory::release_free();
    match saved {
        Ok(n) => {
            tracing::debug!(series = n, path = %st.state.path().display(), "model state saved")
        }
        Err(e) => {
            tracing::error!(error = %e, path = %st.state.path().display(), "cannot save model state")
        }
    }
    *st.last_save.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
}

/// One cycle: read and analyse, evaluate rules, tell the notifier, and
/// save state every few minutes. The configuration in force is held for
/// the whole cycle, so a reload waits for the cycle to end.
fn cycle(st: &Shared) {
    let started = Instant::now();
    let now = now_ms();
    let mut guard = st.live.lock().unwrap_or_else(|e| e.into_inner());
    let live = &mut *guard;
    let sources: Vec<&dyn Source> = live.sources.iter().map(|s| s.source.as_ref()).collect();
    let report = live.engine.cycle_sources(&sources, now);
    let firing = live.rules.as_mut().map(|r| r.evaluate(&live.engine, now));
    let series = live.engine.tracked().len();
    if !live.writers.is_empty() {
        let mut fams = emit::families(&live.engine, live.naming);
        emit::limit_series(&mut fams, live.max_emitted);
        for w in &live.writers {
            w.write(&fams, now);
        }
    }
    if let (Some(firing), Some(notifier)) = (firing, &live.notifier) {
        let alerts: Vec<Alert> = firing
            .into_iter()
            .map(|f| to_alert(f, &st.settings.external_url))
            .collect();
        let now = jiff::Timestamp::now();
        let alerts = st.lifecycle.cycle(now, alerts);
        let r = notifier.sync(now, alerts);
        for (key, why) in r.rejected {
            tracing::warn!(alert = ?key, reason = %why, "alert rejected");
        }
    }
    drop(guard);
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

async fn metrics(
    State((st, reloader)): State<(Arc<Shared>, Arc<Reloader>)>,
    headers: HeaderMap,
) -> Response {
    let mut fams = {
        let live = st.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut fams = emit::families(&live.engine, live.naming);
        let left_out = emit::limit_series(&mut fams, live.max_emitted);
        fams.extend(emitted_health(&live.engine, left_out));
        fams.push(series_limited(&live.engine));
        fams.extend(read_families(&live.sources));
        if let Some(n) = &live.notifier {
            fams.extend(n.metrics().families());
        }
        for w in &live.writers {
            fams.extend(w.families());
        }
        fams
    };
    fams.extend(st.stats.families());
    fams.extend(reloader.families());
    fams.extend(st.lifecycle.families());
    fams.extend(st.reports.families());
    fams.push(shard_info(st.settings.shard));
    fams.extend(imd_exporter::collectors::process_self::families());
    imd_exporter::web::exposition_response(&headers, &merge(fams))
}

/// `imd_analyzer_series_limited_total{query}`: new series left out by
/// `global.max_series_per_query`, counted in every cycle they are.
fn series_limited(engine: &Engine) -> Family {
    let mut f = Family::counter(
        "imd_analyzer_series_limited_total",
        "Series not analysed because their query already had global.max_series_per_query, summed over cycles.",
    );
    for (query, n) in engine.series_limited() {
        f.push([("query", query)], n as f64);
    }
    f
}

/// `imd_analyzer_emitted_series_limited` (series left out of the output by
/// `global.max_emitted_series`) and `imd_analyzer_series_stale` (series kept
/// but not published because no fresh point came within the lookback).
fn emitted_health(engine: &Engine, left_out: usize) -> Vec<Family> {
    if left_out > 0 {
        tracing::warn!(
            left_out,
            "series over global.max_emitted_series are not published"
        );
    }
    let mut limited = Family::gauge(
        "imd_analyzer_emitted_series_limited",
        "Series not published at this scrape because of global.max_emitted_series.",
    );
    limited.push_value(left_out as f64);
    let mut stale = Family::gauge(
        "imd_analyzer_series_stale",
        "Series under analysis whose latest point is older than the lookback (reads failing or the series gone quiet); their results are not published.",
    );
    stale.push_value(
        engine
            .tracked()
            .len()
            .saturating_sub(engine.published().len()) as f64,
    );
    vec![limited, stale]
}

/// `imd_analyzer_shard_info{index,count} 1`: which part of the series this
/// replica analyses (0 of 1 when not sharded).
fn shard_info(shard: Option<Shard>) -> Family {
    let s = shard.unwrap_or(Shard { index: 0, count: 1 });
    let mut f = Family::gauge(
        "imd_analyzer_shard_info",
        "This replica's shard: it analyses the series whose label hash modulo count is index.",
    );
    f.push(
        [
            ("index", s.index.to_string().as_str()),
            ("count", s.count.to_string().as_str()),
        ],
        1.0,
    );
    f
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
    let mut problems = Family::counter(
        "imd_read_problems_total",
        "Problems in the source's answers by query and reason: failed reads and broken streams (one each), series lost to bad chunks (one per series), points dropped or infinite (one per point), empty answers.",
    );
    let mut limited = Family::counter(
        "imd_read_limited_total",
        "Reads stopped by a limit (reason=\"samples\": global.max_samples_per_read).",
    );
    let mut backoff = Family::gauge(
        "imd_read_backoff_seconds",
        "Seconds before a failing source is asked again (0: not backing off).",
    );
    let mut shard_reads = Family::counter(
        "imd_read_shard_reads_total",
        "Reads of a sharded replica by path: listed (the series listed first, only this shard's read) or filtered (every series read, the other shards' left out).",
    );
    let mut failures = Family::gauge(
        "imd_read_consecutive_failures",
        "Reads in a row that found the source down, timed out or overloaded (0 after a success).",
    );
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
        for (query, reason, n) in &snap.problems {
            problems.push(
                [
                    ("source", s.name.as_str()),
                    ("query", query),
                    ("reason", reason),
                ],
                *n as f64,
            );
        }
        for (query, reason, n) in &snap.limited {
            limited.push(
                [
                    ("source", s.name.as_str()),
                    ("query", query),
                    ("reason", reason),
                ],
                *n as f64,
            );
        }
        backoff.push(l, snap.backoff_seconds);
        failures.push(l, f64::from(snap.consecutive_failures));
        for (path, n) in snap.shard_reads {
            shard_reads.push([("source", s.name.as_str()), ("path", path)], n as f64);
        }
    }
    vec![
        reads,
        bytes,
        samples,
        series,
        seconds,
        errors,
        problems,
        limited,
        backoff,
        failures,
        shard_reads,
    ]
}

async fn index(
    State((st, _)): State<(Arc<Shared>, Arc<Reloader>)>,
    id: Option<Extension<Identity>>,
) -> Html<String> {
    let id = id.as_ref().map(|e| &e.0);
    let live = st.live.lock().unwrap_or_else(|e| e.into_inner());
    let sources: Vec<&str> = live.sources.iter().map(|s| s.name.as_str()).collect();
    let token = st.csrf.token(access::subject(id), unix_now());
    let grafana = live.grafana_url.as_deref();
    let mut extra = page::render_anomalies(&live.engine, st.settings.page_threshold, grafana);
    extra.push_str(&page::render_alerts_for(
        &st.lifecycle.views(),
        &page::Viewer {
            user: id.and_then(|i| i.user.as_deref()),
            can_act: access::may_act(id),
            token: &token,
            grafana_url: grafana,
        },
    ));
    Html(page::render(
        &live.engine,
        &page::PageInfo {
            title: "imd-analyzer",
            subtitle: &format!(
                "Reading {} every {}; configuration {}.",
                sources.join(", "),
                crate::query::prom_duration(live.infer_every),
                st.settings.config_file.display()
            ),
            refresh_seconds: live.infer_every.as_secs().clamp(5, 60),
            threshold: st.settings.page_threshold,
            extra_html: &extra,
        },
    ))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The fields of the page's "Acknowledge" and "Resolve" forms.
#[derive(Debug, serde::Deserialize)]
struct AlertForm {
    /// Alertmanager's fingerprint of the alert.
    #[serde(default)]
    fingerprint: String,
    /// Who acts (only asked when nobody is logged in).
    #[serde(default)]
    by: String,
    /// The page's CSRF token (see `web::access`).
    #[serde(default)]
    csrf_token: String,
}

/// Checks that a form post may act: same origin, a valid CSRF token for
/// this user, an operator. Gives the parsed request.
fn admit_form(
    st: &Shared,
    id: Option<&Identity>,
    headers: &HeaderMap,
    f: &AlertForm,
    ack: bool,
) -> Result<(ActionRequest, crate::alert::escalation::Target), ActionError> {
    if !access::same_origin(headers) {
        return Err(ActionError::Forbidden(
            "the form was posted from another site".into(),
        ));
    }
    if !st
        .csrf
        .verify(&f.csrf_token, access::subject(id), unix_now())
    {
        return Err(ActionError::Forbidden(
            "the form's token is missing, expired or not yours: reload the page and try again"
                .into(),
        ));
    }
    if !access::may_act(id) {
        return Err(ActionError::Forbidden(
            "acknowledging and resolving need the operator role".into(),
        ));
    }
    form_request(f, ack, id.and_then(|i| i.user.as_deref()))
}

/// `POST /alerts/ack` from the page: acknowledges the alert (with a
/// silence, as the JSON API does by default), then back to the page.
async fn form_ack(
    State((st, _)): State<(Arc<Shared>, Arc<Reloader>)>,
    id: Option<Extension<Identity>>,
    headers: HeaderMap,
    Form(f): Form<AlertForm>,
) -> Response {
    let id = id.as_ref().map(|e| &e.0);
    let (req, target) = match admit_form(&st, id, &headers, &f, true) {
        Ok(x) => x,
        Err(e) => return form_error(e),
    };
    match st
        .lifecycle
        .acknowledge(target, access::actor(id, &req.by), req.comment, true, None)
        .await
    {
        Ok(_) => Redirect::to("/#alerts").into_response(),
        Err(e) => form_error(e),
    }
}

/// `POST /alerts/resolve` from the page: resolves the alert, then back to
/// the page.
async fn form_resolve(
    State((st, _)): State<(Arc<Shared>, Arc<Reloader>)>,
    id: Option<Extension<Identity>>,
    headers: HeaderMap,
    Form(f): Form<AlertForm>,
) -> Response {
    let id = id.as_ref().map(|e| &e.0);
    let (req, target) = match admit_form(&st, id, &headers, &f, false) {
        Ok(x) => x,
        Err(e) => return form_error(e),
    };
    match st
        .lifecycle
        .resolve(target, access::actor(id, &req.by), req.comment)
        .await
    {
        Ok(_) => Redirect::to("/#alerts").into_response(),
        Err(e) => form_error(e),
    }
}

/// Checks a form as the JSON API checks its body (fingerprint of 16 hex
/// digits, a non-empty `by` of at most 256 characters, or the user).
fn form_request(
    f: &AlertForm,
    ack: bool,
    user: Option<&str>,
) -> Result<(ActionRequest, crate::alert::escalation::Target), ActionError> {
    let body = serde_json::json!({"fingerprint": f.fingerprint, "by": f.by});
    ActionRequest::parse(body.to_string().as_bytes(), ack, user).map_err(ActionError::BadRequest)
}

/// A refused form action as a small page linking back.
fn form_error(e: ActionError) -> Response {
    let (status, msg) = match e {
        ActionError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
        ActionError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        ActionError::Resolved(m) => (StatusCode::CONFLICT, m),
        ActionError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
    };
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>imd-analyzer</title></head>\
             <body><p>{}</p><p><a href=\"/#alerts\">Back to the page</a></p></body></html>",
            page::escape(&msg)
        )),
    )
        .into_response()
}
