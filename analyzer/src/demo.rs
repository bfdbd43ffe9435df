//! The embedded default: the exporter's collectors, an in-process store
//! that scrapes them, the engine and the page, in one process with no
//! Prometheus needed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use imd_exporter::cli::add_collector_flags;
use imd_exporter::config::{CollectorSettings, Config};
use imd_exporter::exposition::Family;
use imd_exporter::paths::Paths;
use imd_exporter::scrape::{Scraper, merge};

use crate::emit::{self, selfmetrics::SelfMetrics};
use crate::engine::{Engine, EngineOptions};
use crate::query::{Direction, Query, QueryConfig, Threshold};
use crate::read::store::Store;
use crate::schedule::{now_ms, spawn_every};
use crate::web::page;

/// Settings of the embedded default.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// Addresses to serve on.
    pub listen: Vec<String>,
    /// Optional exporter-toolkit web config file.
    pub web_config: Option<std::path::PathBuf>,
    /// How often the local collectors are scraped and analysed.
    pub interval: Duration,
    /// How long the in-process store keeps samples.
    pub retention: Duration,
    /// Score from which a series counts as anomalous on the page.
    pub threshold: f64,
}

/// The queries the embedded default analyses: the signals a host's
/// operator looks at first.
pub fn default_queries() -> Vec<QueryConfig> {
    // Level series (rates, load) are forecast by their robust median; the
    // ones that run out (memory, disk space) by their drift.
    let q = |name: &str, selector: &str, rate: bool, threshold: Option<Threshold>| QueryConfig {
        name: name.into(),
        selector: selector.into(),
        expr: None,
        rate,
        anomaly_model: "mad".into(),
        forecast_model: if threshold.is_some() { "drift" } else { "mad" }.into(),
        params: Default::default(),
        horizons: vec![Duration::from_secs(60), Duration::from_secs(600)],
        level: 0.95,
        threshold,
        history: Duration::from_secs(3600),
    };
    let below_zero = Some(Threshold::fixed(0.0, Direction::Below));
    vec![
        q(
            "cpu_idle",
            r#"node_cpu_seconds_total{mode="idle"}"#,
            true,
            None,
        ),
        q("load1", "node_load1", false, None),
        q(
            "memory_available",
            "node_memory_MemAvailable_bytes",
            false,
            below_zero,
        ),
        q(
            "filesystem_avail",
            r#"node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|overlay|squashfs"}"#,
            false,
            below_zero,
        ),
        q(
            "network_receive",
            r#"node_network_receive_bytes_total{device!="lo"}"#,
            true,
            None,
        ),
        q(
            "disk_io_time",
            "node_disk_io_time_seconds_total",
            true,
            None,
        ),
        q(
            "context_switches",
            "node_context_switches_total",
            true,
            None,
        ),
    ]
}

struct Shared {
    store: Store,
    engine: Mutex<Engine>,
    latest: RwLock<Vec<Family>>,
    stats: SelfMetrics,
    ready: AtomicBool,
    settings: DemoSettings,
    load_until: Mutex<Option<Instant>>,
}

/// Runs the embedded default until `shutdown` completes.
pub async fn run(
    settings: DemoSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let scraper = local_scraper()?;
    let queries = default_queries()
        .into_iter()
        .map(|c| Query::new(c).map_err(|(k, m)| anyhow::anyhow!("built-in query{k}: {m}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let retention = settings.retention.as_millis() as i64;
    let max_points = (settings.retention.as_secs_f64() / settings.interval.as_secs_f64().max(0.001))
        .ceil() as usize
        + 1;
    let shared = Arc::new(Shared {
        store: Store::new(retention, max_points),
        engine: Mutex::new(Engine::new(queries, EngineOptions::default())),
        latest: RwLock::new(Vec::new()),
        stats: SelfMetrics::default(),
        ready: AtomicBool::new(false),
        settings: settings.clone(),
        load_until: Mutex::new(None),
    });

    let scraper = Arc::new(scraper);
    let cycles = spawn_every(
        settings.interval,
        Arc::new((shared.clone(), scraper)),
        |(st, sc)| cycle(st, sc),
    );
    let app = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/demo/load", post(start_load))
        .with_state(shared.clone())
        .merge(imd_exporter::web::health_routes({
            let s = shared.clone();
            move || s.ready.load(Ordering::Relaxed)
        }));
    tracing::info!(
        interval = ?settings.interval,
        "embedded default: scraping the local host, analysing, serving the page"
    );
    let served = imd_exporter::web::serve(
        app,
        &settings.listen,
        settings.web_config.as_deref(),
        shutdown,
    )
    .await;
    cycles.abort();
    served
}

/// The exporter's default collectors plus process states, as the embedded
/// default scrapes them.
fn local_scraper() -> anyhow::Result<Scraper> {
    let matches = add_collector_flags(clap::Command::new("imd-analyzer-demo"))
        .try_get_matches_from(["imd-analyzer-demo"])?;
    let mut collectors = BTreeMap::new();
    collectors.insert(
        "processes".to_string(),
        CollectorSettings {
            enabled: Some(true),
            interval: Some(Duration::from_secs(10)),
        },
    );
    let config = Config {
        collectors,
        ..Config::default()
    };
    imd_exporter::cli::build_scraper(&matches, &config, &Paths::default(), None)
}

fn cycle(st: &Shared, scraper: &Scraper) {
    let started = Instant::now();
    let fams = scraper.scrape(None);
    let now = now_ms();
    st.store.ingest(now, &fams);
    *st.latest.write().unwrap_or_else(|e| e.into_inner()) = fams;
    let mut engine = st.engine.lock().unwrap_or_else(|e| e.into_inner());
    let report = engine.cycle(&st.store, now);
    let series = engine.tracked().len();
    drop(engine);
    st.stats
        .record(&report, started.elapsed().as_secs_f64(), now, series);
    st.ready.store(true, Ordering::Relaxed);
    tracing::debug!(
        series = report.series,
        points = report.points,
        fitted = report.fitted,
        "cycle done"
    );
}

async fn metrics(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut fams = st.latest.read().unwrap_or_else(|e| e.into_inner()).clone();
    fams.extend(emit::families(
        &st.engine.lock().unwrap_or_else(|e| e.into_inner()),
        emit::Naming::default(),
    ));
    fams.extend(st.stats.families());
    let (series, samples) = st.store.size();
    let mut s = Family::gauge("imd_store_series", "Series held by the in-process store.");
    s.push_value(series as f64);
    let mut p = Family::gauge("imd_store_samples", "Samples held by the in-process store.");
    p.push_value(samples as f64);
    fams.push(s);
    fams.push(p);
    fams.extend(imd_exporter::collectors::process_self::families());
    imd_exporter::web::exposition_response(&headers, &merge(fams))
}

async fn index(State(st): State<Arc<Shared>>) -> Html<String> {
    let loading = st
        .load_until
        .lock()
        .map(|l| l.is_some_and(|u| u > Instant::now()))
        .unwrap_or(false);
    let extra = format!(
        "<form method=\"post\" action=\"/demo/load\"><button{}>Burn one CPU for 30 s</button> \
         <span class=\"muted\">to see the cpu_idle and load1 scores rise</span></form>",
        if loading { " disabled" } else { "" }
    );
    let engine = st.engine.lock().unwrap_or_else(|e| e.into_inner());
    Html(page::render(
        &engine,
        &page::PageInfo {
            title: "imd — embedded default",
            subtitle: &format!(
                "This host, scraped every {} by the built-in collectors into an in-process store, analysed without Prometheus.",
                crate::query::prom_duration(st.settings.interval)
            ),
            refresh_seconds: st.settings.interval.as_secs().max(2),
            threshold: st.settings.threshold,
            extra_html: &extra,
        },
    ))
}

/// Starts one busy thread for 30 s (once at a time), so that a newcomer can
/// watch the CPU scores react.
async fn start_load(State(st): State<Arc<Shared>>) -> impl IntoResponse {
    let mut until = st.load_until.lock().unwrap_or_else(|e| e.into_inner());
    if until.is_none_or(|u| u <= Instant::now()) {
        let end = Instant::now() + Duration::from_secs(30);
        *until = Some(end);
        std::thread::spawn(move || {
            let mut x: u64 = 1;
            while Instant::now() < end {
                for _ in 0..100_000 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box(x);
            }
        });
    }
    Redirect::to("/")
}
