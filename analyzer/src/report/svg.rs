//! An event's chart as inline SVG, drawn with `plotters` (SVG back end
//! only): the analysed values with the expected band and mean above, the
//! anomaly score with the threshold below, the event shaded in both.
//! No text from labels goes into the SVG (titles are HTML, escaped there);
//! the axis labels are numbers and times.

use plotters::prelude::*;

use super::ChartData;

/// Chart width in pixels.
pub const WIDTH: u32 = 760;
/// Chart height in pixels.
pub const HEIGHT: u32 = 300;

const VALUE: RGBColor = RGBColor(8, 81, 156);
const BAND: RGBColor = RGBColor(158, 202, 225);
const EXPECTED: RGBColor = RGBColor(49, 130, 189);
const SCORE: RGBColor = RGBColor(214, 39, 40);
const EVENT: RGBColor = RGBColor(253, 224, 221);

/// Draws `c`; an empty string when there is nothing to draw.
pub fn chart(c: &ChartData) -> String {
    if c.score.is_empty() && c.values.is_empty() && c.expected.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    if let Err(e) = draw(c, &mut out) {
        tracing::warn!(error = %e, "cannot draw a report chart");
        return String::new();
    }
    out
}

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs().max(1e-9) * 1e-6);
    (lo - pad, hi + pad)
}

fn time_label(ms: &f64) -> String {
    jiff::Timestamp::from_millisecond(*ms as i64)
        .map(|t| t.strftime("%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn number_label(v: &f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || *v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn draw(c: &ChartData, out: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let x0 = c.from_ms as f64;
    let x1 = (c.to_ms as f64).max(x0 + 1.0);
    {
        let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(HEIGHT * 2 / 3);
        let (lo, hi) = range(
            c.values
                .iter()
                .map(|p| p[1])
                .chain(c.expected.iter().flat_map(|p| [p[1], p[2], p[3]])),
        );
        let mut ch = ChartBuilder::on(&top)
            .margin(6)
            .x_label_area_size(0)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, lo..hi)?;
        ch.configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .label_style(("sans-serif", 12))
            .y_labels(5)
            .y_label_formatter(&number_label)
            .x_labels(0)
            .draw()?;
        shade(&mut ch, c, lo, hi)?;
        if c.expected.len() > 1 {
            let mut poly: Vec<(f64, f64)> = c.expected.iter().map(|p| (p[0], p[3])).collect();
            poly.extend(c.expected.iter().rev().map(|p| (p[0], p[2])));
            ch.draw_series(std::iter::once(Polygon::new(poly, BAND.mix(0.6).filled())))?;
            ch.draw_series(LineSeries::new(
                c.expected.iter().map(|p| (p[0], p[1])),
                EXPECTED.stroke_width(1),
            ))?;
        }
        ch.draw_series(LineSeries::new(
            c.values.iter().map(|p| (p[0], p[1])),
            VALUE.stroke_width(2),
        ))?;
        let mut sc = ChartBuilder::on(&bottom)
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, 0f64..1.05f64)?;
        sc.configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .label_style(("sans-serif", 12))
            .y_labels(3)
            .x_labels(6)
            .x_label_formatter(&time_label)
            .draw()?;
        shade(&mut sc, c, 0.0, 1.05)?;
        sc.draw_series(LineSeries::new(
            [(x0, c.threshold), (x1, c.threshold)],
            BLACK.mix(0.5).stroke_width(1),
        ))?;
        sc.draw_series(LineSeries::new(
            c.score.iter().map(|p| (p[0], p[1])),
            SCORE.stroke_width(2),
        ))?;
        root.present()?;
    }
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn shade(
    ch: &mut Chart<'_, '_>,
    c: &ChartData,
    lo: f64,
    hi: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = (c.event_from_ms as f64, c.event_to_ms as f64);
    // A one-point event still gets a visible stripe.
    let min_w = (c.to_ms - c.from_ms) as f64 / 200.0;
    let b = b.max(a + min_w);
    ch.draw_series(std::iter::once(Rectangle::new(
        [(a, lo), (b, hi)],
        EVENT.mix(0.8).filled(),
    )))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_band_value_and_score() {
        let t = |i: i64| (1_767_225_600_000 + i * 60_000) as f64;
        let c = ChartData {
            from_ms: t(0) as i64,
            to_ms: t(59) as i64,
            event_from_ms: t(30) as i64,
            event_to_ms: t(33) as i64,
            threshold: 0.99,
            values: (0..60).map(|i| [t(i), (i % 7) as f64]).collect(),
            expected: (0..60).map(|i| [t(i), 3.0, 1.0, 5.0]).collect(),
            score: (0..60)
                .map(|i| [t(i), if i == 31 { 1.0 } else { 0.2 }])
                .collect(),
        };
        let s = chart(&c);
        assert!(s.starts_with("<svg"), "{s}");
        assert!(s.contains("<polygon"), "band missing");
        assert!(s.matches("<polyline").count() >= 3, "lines missing");
        assert!(s.contains("01-01 00:"), "time labels missing");
        let empty = ChartData {
            values: vec![],
            expected: vec![],
            score: vec![],
            ..c
        };
        assert_eq!(chart(&empty), "");
    }
}
