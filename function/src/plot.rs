//! PNG charts: training curves and confusion matrices.
//!
//! Text needs a TrueType font; plotters' pure-Rust renderer is given the first
//! of a few common system fonts (DejaVu, Liberation, Noto). Without one the
//! charts are still drawn, without their labels, and a warning says why.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::finetune::train::EpochStats;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Registers a system font once; false when none was found.
fn font() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        tracing::warn!(
            "no TrueType font found ({}): charts are drawn without text",
            FONT_PATHS.join(", ")
        );
        false
    })
}

/// Why a chart could not be drawn or written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PlotError(String);

type PlotResult = Result<(), PlotError>;

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// The canvas a chart draws on.
type Canvas<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws a `width` × `height` chart into memory and writes it as a PNG with
/// the `image` crate catdog decodes pictures with: plotters' own encoder
/// would build a second, older `image` and `png` into every build.
fn write_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Canvas<'_>) -> PlotResult,
) -> PlotResult {
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    image::save_buffer_with_format(
        path,
        &rgb,
        width,
        height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(err)
}

/// Loss and accuracy per epoch (train, and valid when present).
pub(crate) fn training_curves(history: &[EpochStats], path: &Path) -> PlotResult {
    let text = font();
    write_png(path, (900, 420), |root| draw_curves(root, history, text))
}

/// The loss chart on the left half, the accuracy chart on the right.
fn draw_curves(root: &Canvas<'_>, history: &[EpochStats], text: bool) -> PlotResult {
    let (left, right) = root.split_horizontally(450);
    let n = history.len().max(1) as f32;
    let max_loss = history
        .iter()
        .flat_map(|h| [Some(h.loss), h.valid_loss])
        .flatten()
        .fold(0.1f32, f32::max)
        * 1.1;
    for (area, title, ymax, pick_train, pick_valid) in [
        (
            &left,
            "loss",
            max_loss,
            (|h: &EpochStats| h.loss) as fn(&EpochStats) -> f32,
            (|h: &EpochStats| h.valid_loss) as fn(&EpochStats) -> Option<f32>,
        ),
        (
            &right,
            "accuracy",
            1.0,
            |h: &EpochStats| h.accuracy,
            |h: &EpochStats| h.valid_accuracy,
        ),
    ] {
        let mut b = ChartBuilder::on(area);
        b.margin(12).x_label_area_size(30).y_label_area_size(45);
        if text {
            b.caption(title, ("sans-serif", 20));
        }
        let mut chart = b
            .build_cartesian_2d(1f32..n.max(2.0), 0f32..ymax)
            .map_err(err)?;
        if text {
            chart.configure_mesh().x_desc("epoch").draw().map_err(err)?;
        } else {
            chart
                .configure_mesh()
                .disable_x_mesh()
                .disable_y_mesh()
                .x_labels(0)
                .y_labels(0)
                .draw()
                .map_err(err)?;
        }
        let train = chart
            .draw_series(LineSeries::new(
                history.iter().map(|h| (h.epoch as f32, pick_train(h))),
                BLUE.stroke_width(2),
            ))
            .map_err(err)?;
        if text {
            train
                .label("train")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        }
        if history.iter().any(|h| pick_valid(h).is_some()) {
            let valid = chart
                .draw_series(LineSeries::new(
                    history
                        .iter()
                        .filter_map(|h| pick_valid(h).map(|v| (h.epoch as f32, v))),
                    RED.stroke_width(2),
                ))
                .map_err(err)?;
            if text {
                valid
                    .label("valid")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
            }
        }
        if text {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(err)?;
        }
    }
    Ok(())
}

/// A confusion matrix: rows are true classes, columns predicted ones.
pub fn confusion_matrix(
    rows: &[String],
    cols: &[String],
    counts: &[Vec<usize>],
    path: &Path,
) -> PlotResult {
    let text = font();
    let cell = 90i32;
    let (ox, oy) = (150i32, 70i32);
    let w = (ox + cell * cols.len() as i32 + 30) as u32;
    let h = (oy + cell * rows.len() as i32 + 30) as u32;
    write_png(path, (w.max(320), h), |root| {
        draw_matrix(root, (rows, cols, counts), (cell, ox, oy), text)
    })
}

/// Shaded cells with their counts, and the class names when there is a font.
fn draw_matrix(
    root: &Canvas<'_>,
    (rows, cols, counts): (&[String], &[String], &[Vec<usize>]),
    (cell, ox, oy): (i32, i32, i32),
    text: bool,
) -> PlotResult {
    let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    for (r, row) in counts.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let x = ox + c as i32 * cell;
            let y = oy + r as i32 * cell;
            let shade = 1.0 - 0.8 * (v as f64 / max);
            let colour = RGBColor((255.0 * shade) as u8, (255.0 * shade) as u8, 255);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                colour.filled(),
            ))
            .map_err(err)?;
            root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK))
                .map_err(err)?;
            if text {
                let fg = if shade < 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    v.to_string(),
                    (x + cell / 2 - 10, y + cell / 2 - 10),
                    ("sans-serif", 22).into_font().color(&fg),
                ))
                .map_err(err)?;
            }
        }
    }
    if text {
        root.draw(&Text::new(
            "true \\ predicted",
            (10, 20),
            ("sans-serif", 16),
        ))
        .map_err(err)?;
        for (c, name) in cols.iter().enumerate() {
            root.draw(&Text::new(
                name.clone(),
                (ox + c as i32 * cell + 8, oy - 25),
                ("sans-serif", 16),
            ))
            .map_err(err)?;
        }
        for (r, name) in rows.iter().enumerate() {
            root.draw(&Text::new(
                name.clone(),
                (10, oy + r as i32 * cell + cell / 2 - 8),
                ("sans-serif", 16),
            ))
            .map_err(err)?;
        }
    }
    Ok(())
}
