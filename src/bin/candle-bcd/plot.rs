//! `train --plot DIR`: SVG curves of the objective, its parts and the accuracies per iteration.

use std::path::Path;

use anyhow::{anyhow, Result};
use candle_bcd::trainer::IterationRecord;
use plotters::prelude::*;

/// One curve: a name and its `(iteration, value)` points.
type Series = (&'static str, Vec<(f64, f64)>);

/// Draws `series` as lines into `path` (log-scale y when `log_y`).
fn draw(path: &Path, title: &str, series: &[Series], log_y: bool) -> Result<()> {
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points.filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0)) {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        return Ok(()); // nothing to draw
    }
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root);
    chart
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70);
    let colors = [BLUE, RED, GREEN, MAGENTA, BLACK];
    macro_rules! plot_lines {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc("iteration")
                .draw()
                .map_err(|e| err(&e))?;
            for ((name, s), color) in series.iter().zip(colors.iter().cycle()) {
                let s = s
                    .iter()
                    .copied()
                    .filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0));
                ctx.draw_series(LineSeries::new(s, color))
                    .map_err(|e| err(&e))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            }
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    if log_y {
        plot_lines!(chart
            .build_cartesian_2d(0f64..x_max, (y_min * 0.8..y_max * 1.25).log_scale())
            .map_err(|e| err(&e))?);
    } else {
        let pad = ((y_max - y_min) * 0.05).max(1e-3);
        plot_lines!(chart
            .build_cartesian_2d(0f64..x_max, y_min - pad..y_max + pad)
            .map_err(|e| err(&e))?);
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes `objective.svg` and `accuracy.svg` into `dir`.
pub fn write(dir: &Path, records: &[IterationRecord]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let pick = |f: &dyn Fn(&IterationRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.step.iteration as f64, v)))
            .collect()
    };
    let objective: Vec<Series> = vec![
        ("objective", pick(&|r| Some(r.step.objective.total()))),
        ("loss", pick(&|r| Some(r.step.objective.loss))),
        (
            "activation penalty",
            pick(&|r| Some(r.step.objective.activation_penalty)),
        ),
        (
            "pre-activation penalty",
            pick(&|r| Some(r.step.objective.preactivation_penalty)),
        ),
        ("regularizer", pick(&|r| Some(r.step.objective.regularizer))),
    ];
    draw(
        &dir.join("objective.svg"),
        "BCD objective and its parts",
        &objective,
        true,
    )?;
    let accuracy: Vec<Series> = vec![
        ("train accuracy", pick(&|r| r.train_accuracy)),
        ("test accuracy", pick(&|r| r.test_accuracy)),
    ];
    draw(&dir.join("accuracy.svg"), "accuracy", &accuracy, false)
}
