//! `score`: an anomaly score for every row of a series, computed online.
//!
//! The model starts empty and follows the series point by point: each
//! point is scored, then taken in. The model is refitted on everything
//! seen so far when the count of points reaches twice `min_points`, then
//! each time it doubles, then every 1,000 points — so seasons are detected
//! as soon as there is enough data, and no score ever depends on a later
//! point. Rows before the model has `min_points` of history score 0 (the
//! documented fallback for a series too short to judge).

use anyhow::Context;

use super::ScoreArgs;
use crate::model::{self, ModelError, ModelParams, Point};

/// Most points between two refits.
const MAX_REFIT_GAP: usize = 1000;

/// Online scores of `points` by model `name`.
pub fn score_series(
    points: &[Point],
    name: &str,
    params: &ModelParams,
) -> Result<Vec<f64>, ModelError> {
    let mut m = model::build(name, params)?;
    let mut next_fit = 2 * params.min_points;
    let mut out = Vec::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        out.push(m.score(*p));
        m.update(*p);
        if i + 1 == next_fit {
            m.fit(&points[..=i])?;
            next_fit += next_fit.min(MAX_REFIT_GAP);
        }
    }
    Ok(out)
}

/// Runs `score`.
pub fn run(a: &ScoreArgs) -> anyhow::Result<()> {
    if super::csv::is_table(&a.input) {
        return run_multivariate(a);
    }
    super::check_model(&a.model)?;
    super::check_season(a.season)?;
    let series = super::csv::read(&a.input, false)?;
    let rows = &series[0].rows;
    let params = ModelParams {
        window: a.window,
        season: a.season,
        ..ModelParams::default()
    };
    let params = ModelParams {
        min_points: params.min_points.min(params.window),
        ..params
    };
    let points: Vec<Point> = rows.iter().map(|r| r.point).collect();
    let scores = score_series(&points, &a.model, &params)?;
    let file = std::fs::File::create(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(file));
    w.write_record(["timestamp", "value", "anomaly_score"])?;
    for (r, s) in rows.iter().zip(&scores) {
        w.write_record([r.timestamp.as_str(), r.value.as_str(), &s.to_string()])?;
    }
    // Flushes the CSV buffer and the file buffer under it.
    w.flush()
        .with_context(|| format!("writing {}", a.output.display()))?;
    Ok(())
}

/// `score` on a multivariate input (`timestamp,a,b,...`): one detector
/// (`--model iforest` or `ocsvm`) over all columns; the output adds
/// `anomaly_score` and a `contribution_<column>` per input column.
fn run_multivariate(a: &ScoreArgs) -> anyhow::Result<()> {
    use crate::model::learned::multivariate::score_rows;
    crate::engine::group::check_model(&a.model).map_err(|e| anyhow::anyhow!("--model: {e}"))?;
    let table = super::csv::read_table(&a.input)?;
    let rows: Vec<(i64, Vec<f64>)> = table.rows.iter().map(|r| (r.t, r.values.clone())).collect();
    let names = table.columns();
    let params = ModelParams {
        window: a.window,
        season: a.season,
        ..ModelParams::default()
    };
    let params = ModelParams {
        min_points: params.min_points.min(params.window),
        ..params
    };
    let scored = score_rows(&rows, &a.model, names.clone(), &params)?;
    let out = std::fs::File::create(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(out));
    let mut head = table.header.clone();
    head.push("anomaly_score".into());
    head.extend(names.iter().map(|n| format!("contribution_{n}")));
    w.write_record(&head)?;
    for (rec, s) in table.rows.iter().zip(&scored) {
        let mut row = rec.fields.clone();
        row.push(s.score.to_string());
        row.extend(s.contributions.iter().map(|c| c.to_string()));
        w.write_record(&row)?;
    }
    w.flush()
        .with_context(|| format!("writing {}", a.output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores never look ahead: changing a later point leaves every
    /// earlier score as it was.
    #[test]
    fn no_look_ahead() {
        let base: Vec<Point> = (0..300)
            .map(|i| Point {
                t: i * 60_000,
                v: 10.0
                    + (i as f64 * 0.7).sin()
                    + 3.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin(),
            })
            .collect();
        for name in model::NAMES {
            let p = ModelParams::default();
            let a = score_series(&base, name, &p).unwrap();
            let mut changed = base.clone();
            changed[250].v += 100.0;
            let b = score_series(&changed, name, &p).unwrap();
            assert_eq!(a[..250], b[..250], "{name} looked ahead");
            assert!(b[250] > 0.99, "{name} missed the spike: {}", b[250]);
            assert!(a.iter().all(|s| (0.0..=1.0).contains(s)));
            assert_eq!(a[0], 0.0);
        }
    }
}
