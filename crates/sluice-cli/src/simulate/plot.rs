//! One SVG of a comparison: replicas (top) and TTFT P95 as the loop read it (bottom) over time,
//! one line per policy, the TTFT objective dashed.

use plotters::prelude::*;
use sluice_sim::RunResult;

use crate::report::plot::PlotError;

const SIZE: (u32, u32) = (1100, 760);

/// Draws the two panels.
pub fn timeline_svg(
    runs: &[RunResult],
    ttft_objective: Option<f64>,
    duration: f64,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    let minutes = (duration / 60.0).max(1.0);
    let max_replicas = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|s| s.replicas))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        + 1.0;
    let max_ttft = runs
        .iter()
        .flat_map(|r| r.timeline.iter().filter_map(|s| s.ttft_p95_seconds))
        .fold(ttft_objective.unwrap_or(1.0) * 2.0, f64::max)
        .min(30.0);
    (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);
        let mut up = ChartBuilder::on(&top)
            .caption("Replicas over time", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..minutes, 0f64..max_replicas)?;
        up.configure_mesh()
            .x_desc("minutes")
            .y_desc("replicas")
            .draw()?;
        let mut down = ChartBuilder::on(&bottom)
            .caption("TTFT P95 as the loop reads it", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..minutes, 0f64..max_ttft)?;
        down.configure_mesh()
            .x_desc("minutes")
            .y_desc("seconds")
            .draw()?;
        for (i, r) in runs.iter().enumerate() {
            let color = colors[i % colors.len()];
            let reps = r
                .timeline
                .iter()
                .map(|s| (s.at / 60.0, f64::from(s.replicas)));
            up.draw_series(LineSeries::new(reps, color.stroke_width(2)))?
                .label(r.policy.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            let ttft = r
                .timeline
                .iter()
                .filter_map(|s| Some((s.at / 60.0, s.ttft_p95_seconds?.min(max_ttft))));
            down.draw_series(LineSeries::new(ttft, color.stroke_width(2)))?;
        }
        if let Some(t) = ttft_objective {
            down.draw_series(DashedLineSeries::new(
                [(0.0, t), (minutes, t)],
                6,
                4,
                BLACK.stroke_width(1),
            ))?;
        }
        up.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })()
    .map_err(|e| PlotError::Draw {
        name: "simulation timeline".into(),
        message: e.to_string(),
    })?;
    Ok(svg)
}
