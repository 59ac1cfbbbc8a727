//! Training curves as a PNG chart: loss on the left, accuracy on the right, per epoch, with
//! training and validation series, labelled axes and a legend. Text uses the bundled DejaVu
//! Sans, so no system fonts or libraries are needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::nn::History;
use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is valid; a failure here would only lose the text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: format!("cannot draw the chart: {e}"),
    }
}

/// A series to draw: legend label, colour, (epoch, value) points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    epochs: usize,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let values = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            0.8f64..(epochs as f64 + 0.2).max(1.2),
            (lo - pad)..(hi + pad),
        )?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_label)
        .x_labels(epochs.clamp(2, 12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.3}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()?;
    for (label, colour, points) in series.iter().filter(|s| !s.2.is_empty()) {
        let style = ShapeStyle::from(colour).stroke_width(3);
        chart
            .draw_series(LineSeries::new(points.clone(), style))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(legend)
        .draw()?;
    Ok(())
}

/// Draws the loss and accuracy curves of `history` into a PNG file.
pub fn save_history_png(history: &History, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    register_font();
    let epochs = history.epochs.len();
    let pick = |f: &dyn Fn(&crate::nn::EpochStats) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .epochs
            .iter()
            .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
            .collect()
    };
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(230, 110, 20);
    let loss = [
        ("training loss", blue, pick(&|e| Some(e.train_loss))),
        ("validation loss", orange, pick(&|e| e.val_loss)),
    ];
    let accuracy = [
        ("training accuracy", blue, pick(&|e| Some(e.train_accuracy))),
        ("validation accuracy", orange, pick(&|e| e.val_accuracy)),
    ];
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(600);
        // Legends sit where the curves usually are not: losses fall, accuracies rise.
        panel(
            &left,
            "Loss",
            "cross-entropy",
            epochs,
            &loss,
            SeriesLabelPosition::UpperRight,
        )?;
        panel(
            &right,
            "Accuracy",
            "fraction correct",
            epochs,
            &accuracy,
            SeriesLabelPosition::LowerRight,
        )?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| plot_err(path, e))
}

/// Curves of one quantity per epoch (e.g. two models' validation accuracy) as a PNG: each
/// series a `(label, values)` pair, value `i` at epoch `i + 1`.
pub fn save_curves_png(
    series: &[(&str, Vec<f64>)],
    (title, y_label): (&str, &str),
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    register_font();
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(230, 110, 20),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
    ];
    let epochs = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    let drawn: Vec<Series> = series
        .iter()
        .enumerate()
        .map(|(i, (label, values))| {
            let points = values
                .iter()
                .enumerate()
                .map(|(e, &v)| (e as f64 + 1.0, v))
                .collect();
            (*label, palette[i % palette.len()], points)
        })
        .collect();
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        panel(
            &root,
            title,
            y_label,
            epochs,
            &drawn,
            SeriesLabelPosition::LowerRight,
        )?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| plot_err(path, e))
}

/// Greyscale images (values in `[0, 1]`, each `height × width`, row-major) as a PNG grid of
/// `rows` rows, each image drawn `zoom` times larger with a 2-pixel white gap: e.g. test
/// digits in the first row and their reconstructions in the second.
pub fn save_image_grid(
    images: &[Vec<f32>],
    (height, width): (usize, usize),
    rows: usize,
    zoom: usize,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    let cols = images.len().div_ceil(rows.max(1));
    let (cell_w, cell_h) = (width * zoom + 2, height * zoom + 2);
    let size = ((cols * cell_w + 2) as u32, (rows * cell_h + 2) as u32);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        for (k, image) in images.iter().enumerate() {
            let (x0, y0) = (2 + (k % cols) * cell_w, 2 + (k / cols) * cell_h);
            for (i, &v) in image.iter().enumerate().take(height * width) {
                // Ink dark on white, as digits are read.
                let level = (255.0 * (1.0 - v.clamp(0.0, 1.0))).round() as u8;
                let (px, py) = (x0 + (i % width) * zoom, y0 + (i / width) * zoom);
                let colour = RGBColor(level, level, level);
                root.draw(&Rectangle::new(
                    [
                        (px as i32, py as i32),
                        ((px + zoom) as i32, (py + zoom) as i32),
                    ],
                    colour.filled(),
                ))?;
            }
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| plot_err(path, e))
}
