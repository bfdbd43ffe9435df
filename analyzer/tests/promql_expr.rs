//! Queries given as PromQL expressions, read through `query_range` from a
//! real Prometheus: the engine analyses the expression's result series.

mod common;

use std::time::Duration;

use common::{build_recent_tsdb, free_port, start_prometheus_on, tempdir, unix_now_ms};
use imd_analyzer::engine::{Engine, EngineOptions};
use imd_analyzer::query::{Query, QueryConfig};
use imd_analyzer::read::Source;
use imd_analyzer::read::promql::{PromqlOptions, QueryRange};
use imd_analyzer::read::remote::{RemoteRead, RemoteReadOptions};

#[test]
fn an_expression_is_read_by_query_range_and_analysed() {
    let dir = tempdir();
    let series = [
        ("imd_expr_test", "a"),
        ("imd_expr_test", "b"),
        ("imd_expr_test", "c"),
    ];
    let tsdb = build_recent_tsdb(dir.path(), &series, 120, |i, k| {
        (i + 1) as f64 * 10.0 + (k % 3) as f64
    });
    let port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let now = unix_now_ms();
    let qr = QueryRange::new(&PromqlOptions::new(base.clone(), Duration::from_secs(15))).unwrap();

    // The expression's result: one series without __name__, the sum of three.
    let rows = qr
        .read_expr("sum(imd_expr_test)", now - 30 * 60_000, now)
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].labels.is_empty(), "{:?}", rows[0].labels);
    let last = rows[0].points.to_points().last().unwrap().v;
    assert!(
        (60.0..=66.0).contains(&last),
        "sum of 10+k, 20+k, 30+k: {last}"
    );

    // Remote-read cannot evaluate PromQL and says so.
    let rr = RemoteRead::new(&RemoteReadOptions::new(format!("{base}/api/v1/read"))).unwrap();
    let e = rr
        .read_expr("sum(imd_expr_test)", now - 60_000, now)
        .unwrap_err();
    assert!(e.to_string().contains("query_range source"), "{e}");

    // The engine analyses an expression query like any other.
    let q = Query::new(QueryConfig {
        name: "by_instance".into(),
        selector: String::new(),
        expr: Some("imd_expr_test * 2".into()),
        rate: false,
        anomaly_model: "mad".into(),
        forecast_model: "mad".into(),
        params: Default::default(),
        horizons: vec![Duration::from_secs(60)],
        level: 0.95,
        threshold: None,
        history: Duration::from_secs(1800),
    })
    .unwrap();
    let mut engine = Engine::new(vec![q], EngineOptions::default());
    let report = engine.cycle(&qr, now);
    assert_eq!(report.read_errors, 0);
    let tracked = engine.tracked();
    assert_eq!(tracked.len(), 3);
    let values: Vec<f64> = tracked.iter().map(|t| t.value().unwrap()).collect();
    assert!(
        values.iter().all(|v| *v >= 20.0),
        "doubled values: {values:?}"
    );
    assert!(
        tracked
            .iter()
            .all(|t| t.labels.iter().all(|(k, _)| k != "__name__"))
    );
}
