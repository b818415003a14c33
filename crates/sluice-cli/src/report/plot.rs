//! SVG plots of a bench: TTFT and TPOT over time (each request as a point, plus the mean per
//! time window) and the latency CDF. Uses plotters' SVG backend, whose text is emitted as SVG
//! `<text>` elements laid out with plotters' built-in estimate, so no system fonts or fontconfig
//! are needed.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use thiserror::Error;

use super::BenchReport;

const SIZE: (u32, u32) = (960, 520);
/// Windows the run is cut into for the mean line.
const WINDOWS: usize = 40;

#[derive(Debug, Error)]
pub enum PlotError {
    #[error("failed to create plot directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write plot {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to draw plot {name}: {message}")]
    Draw { name: String, message: String },
}

/// Writes every plot that has data into `dir`; returns the files written.
pub fn write_plots(dir: &Path, report: &BenchReport) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let ok = || report.samples.iter().filter(|s| s.ok());
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let ttft: Vec<(f64, f64)> = ok()
        .filter_map(|s| Some((s.start_s, ms(s.ttft?))))
        .collect();
    let tpot: Vec<(f64, f64)> = ok()
        .filter_map(|s| Some((s.start_s, ms(s.tpot?))))
        .collect();
    let latency: Vec<f64> = ok().map(|s| ms(s.latency)).collect();
    let ttft_values: Vec<f64> = ttft.iter().map(|p| p.1).collect();
    let span = report.summary.duration_s.max(1.0);

    let mut plots = Vec::new();
    if !ttft.is_empty() {
        plots.push((
            "ttft_over_time.svg",
            over_time_svg("TTFT over time", "TTFT (ms)", &ttft, span)?,
        ));
    }
    if !tpot.is_empty() {
        plots.push((
            "tpot_over_time.svg",
            over_time_svg("TPOT over time", "TPOT (ms)", &tpot, span)?,
        ));
    }
    if !latency.is_empty() {
        let mut series = vec![("end-to-end latency", latency)];
        if !ttft_values.is_empty() {
            series.push(("TTFT", ttft_values));
        }
        plots.push(("latency_cdf.svg", cdf_svg(&series)?));
    }
    let mut written = Vec::new();
    for (name, svg) in plots {
        let path = dir.join(name);
        std::fs::write(&path, svg).map_err(|source| PlotError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn draw_err(name: &str) -> impl Fn(String) -> PlotError + '_ {
    move |message| PlotError::Draw {
        name: name.to_string(),
        message,
    }
}

/// Scatter of `(seconds since start, ms)` with the per-window mean as a line.
pub fn over_time_svg(
    title: &str,
    y_desc: &str,
    points: &[(f64, f64)],
    span_s: f64,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.1;
    let x_max = points.iter().map(|p| p.0).fold(span_s, f64::max);
    let means = window_means(points, x_max);
    (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc(y_desc)
            .draw()?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 2, BLUE.mix(0.35).filled())),
            )?
            .label("request")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
        chart
            .draw_series(LineSeries::new(means, RED.stroke_width(2)))?
            .label("mean per window")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })()
    .map_err(|e| draw_err(title)(e.to_string()))?;
    Ok(svg)
}

/// Empirical CDFs (fraction of requests at or below x ms) of each named series.
pub fn cdf_svg(series: &[(&str, Vec<f64>)]) -> Result<String, PlotError> {
    let mut svg = String::new();
    let x_max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let colors = [RED, BLUE, GREEN, MAGENTA];
    (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency CDF", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..1.0)?;
        chart
            .configure_mesh()
            .x_desc("latency (ms)")
            .y_desc("fraction of requests")
            .draw()?;
        for (i, (name, values)) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(cdf_points(values), color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })()
    .map_err(|e| draw_err("latency CDF")(e.to_string()))?;
    Ok(svg)
}

/// Step points of the empirical CDF: after the i-th smallest value, (i+1)/n of requests are done.
pub fn cdf_points(values: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let mut out = Vec::with_capacity(sorted.len() * 2 + 1);
    out.push((0.0, 0.0));
    for (i, v) in sorted.iter().enumerate() {
        out.push((*v, i as f64 / n));
        out.push((*v, (i + 1) as f64 / n));
    }
    out
}

/// Mean of y in each of [`WINDOWS`] equal time windows, at the window's centre; empty windows skipped.
pub fn window_means(points: &[(f64, f64)], x_max: f64) -> Vec<(f64, f64)> {
    let width = (x_max / WINDOWS as f64).max(1e-9);
    let mut sums = vec![(0.0, 0u32); WINDOWS];
    for &(x, y) in points {
        let i = ((x / width) as usize).min(WINDOWS - 1);
        sums[i].0 += y;
        sums[i].1 += 1;
    }
    sums.iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(i, (sum, n))| ((i as f64 + 0.5) * width, sum / f64::from(*n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_steps_reach_one() {
        let pts = cdf_points(&[30.0, 10.0, 20.0]);
        assert_eq!(
            pts,
            vec![
                (0.0, 0.0),
                (10.0, 0.0),
                (10.0, 1.0 / 3.0),
                (20.0, 1.0 / 3.0),
                (20.0, 2.0 / 3.0),
                (30.0, 2.0 / 3.0),
                (30.0, 1.0)
            ]
        );
    }

    #[test]
    fn window_means_average_each_window() {
        // 40 windows over 40 s: one per second.
        let pts = [(0.2, 10.0), (0.8, 20.0), (39.5, 5.0)];
        assert_eq!(window_means(&pts, 40.0), vec![(0.5, 15.0), (39.5, 5.0)]);
    }

    #[test]
    fn svg_has_text_without_system_fonts() {
        let svg = over_time_svg(
            "TTFT over time",
            "TTFT (ms)",
            &[(0.5, 12.0), (1.5, 14.0)],
            2.0,
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("<text") && svg.contains("TTFT over time"));
        assert!(svg.contains("time since start (s)") && svg.contains("<circle"));
        let cdf = cdf_svg(&[("end-to-end latency", vec![1.0, 2.0, 3.0])]).unwrap();
        assert!(cdf.contains("Latency CDF") && cdf.contains("<polyline"));
    }
}
