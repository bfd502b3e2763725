//! Inline answers for Jupyter notebooks run by the evcxr Rust kernel: each
//! picture as a card (thumbnail, label, a bar per class) in HTML, plus the
//! helpers the demo notebook uses to find photos. (The notebook serves
//! through [`crate::host::serve`], like `catdog serve`.)

// evcxr shows a cell's rich output from markers on stdout: printing them is
// this host's way to answer, as the binary's is on the command line.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::PathBuf;

use base64::Engine as _;
use image::RgbImage;

use crate::files::FileAnswer;
use crate::messages::file_name;
use crate::model::output::Prediction;
use crate::settings::Settings;

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 160;

/// Shows `html` as a rich output of the current evcxr cell (evcxr reads
/// these markers off stdout; elsewhere they are plain text).
pub fn display_html(html: &str) {
    println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT");
}

/// Shows the PNG file at `path` as a picture output of the current cell
/// (`image/png`, as Jupyter shows a plot).
pub fn display_png(path: &std::path::Path) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    println!("EVCXR_BEGIN_CONTENT image/png\n{b64}\nEVCXR_END_CONTENT");
    Ok(())
}

/// A grid of cards, one per file: the answer, or why the file was skipped.
pub fn answers_html(answers: &[FileAnswer]) -> String {
    let mut html =
        String::from("<div style=\"display:flex;flex-wrap:wrap;gap:12px;font-family:sans-serif\">");
    for a in answers {
        let name = file_name(&a.path);
        match &a.outcome {
            Ok((picture, p)) => html.push_str(&answer_card(&name, picture, p)),
            Err(e) => {
                let _ = write!(
                    html,
                    "<div class=\"catdog-card\" style=\"width:{THUMBNAIL_SIDE}px;border:1px solid #c33;\
                     padding:6px\"><b>{}</b><br><span style=\"color:#c33\">{}</span></div>",
                    escape(&name),
                    escape(&e.to_string())
                );
            }
        }
    }
    html.push_str("</div>");
    html
}

/// One picture's card: thumbnail, label with its probability, a bar per class.
pub fn answer_card(name: &str, picture: &RgbImage, p: &Prediction) -> String {
    let mut html = format!(
        "<div class=\"catdog-card\" data-label=\"{label}\" style=\"width:{THUMBNAIL_SIDE}px;\
         border:1px solid #ccc;border-radius:6px;padding:6px\">",
        label = escape(&p.label)
    );
    // With an explanation, the card shows the picture with it over it; the
    // picture alone folds out below.
    let overlay = p.explanation.as_ref().and_then(|e| {
        let png = e.overlay_png.as_ref()?;
        let src = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png.0)
        );
        Some((e, src))
    });
    let image = |src: &str, class: &str| {
        format!(
            "<img class=\"{class}\" src=\"{src}\" alt=\"{}\" \
             style=\"display:block;margin:auto;max-width:100%\">",
            escape(name)
        )
    };
    match (&overlay, thumbnail_data_url(picture)) {
        (Some((e, overlay)), thumbnail) => {
            html.push_str(&image(overlay, "catdog-why"));
            let method = e.method.as_str();
            let _ = write!(
                html,
                "<div style=\"font-size:11px;color:#555\">why: {} ({method})</div>",
                escape(&e.label)
            );
            if let Some(src) = thumbnail {
                let _ = write!(
                    html,
                    "<details><summary style=\"font-size:11px\">picture</summary>{}</details>",
                    image(&src, "catdog-picture")
                );
            }
        }
        (None, Some(src)) => html.push_str(&image(&src, "catdog-picture")),
        (None, None) => {}
    }
    let _ = write!(
        html,
        "<div style=\"font-size:12px;color:#555;overflow:hidden;text-overflow:ellipsis\">{}</div>\
         <div style=\"font-size:18px\"><b>{}</b> {:.1}%</div>",
        escape(name),
        escape(&p.label),
        p.confidence * 100.0
    );
    for (label, prob) in &p.scores.0 {
        let colour = if *label == p.label { "#2a7" } else { "#bbb" };
        let _ = write!(
            html,
            "<div style=\"font-size:11px\">{} {:.1}%<div class=\"catdog-bar\" \
             style=\"background:{colour};height:6px;width:{:.1}%\"></div></div>",
            escape(label),
            prob * 100.0,
            (prob * 100.0).clamp(0.0, 100.0)
        );
    }
    html.push_str("</div>");
    html
}

/// One line per file, `name → label (confidence)`, for plain-text output.
pub fn answers_text(answers: &[FileAnswer]) -> String {
    let mut out = String::new();
    for a in answers {
        let name = file_name(&a.path);
        let _ = match &a.outcome {
            Ok((_, p)) => writeln!(out, "{name} → {} ({:.4})", p.label, p.confidence),
            Err(e) => writeln!(out, "{name} → skipped: {e}"),
        };
    }
    out
}

/// A small JPEG of the picture as a `data:` URL (no files, no network).
fn thumbnail_data_url(picture: &RgbImage) -> Option<String> {
    let (w, h) = picture.dimensions();
    if w == 0 || h == 0 {
        return None;
    }
    let scale = (THUMBNAIL_SIDE as f64 / w.max(h) as f64).min(1.0);
    let tw = ((w as f64 * scale).round() as u32).max(1);
    let th = ((h as f64 * scale).round() as u32).max(1);
    let small = image::imageops::thumbnail(picture, tw, th);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 85)
        .encode_image(&small)
        .ok()?;
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    ))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// No folder of photos was found for the demo.
#[derive(Debug, thiserror::Error)]
#[error("no photos found (looked in {0}): set CATDOG_PHOTOS to a folder of pictures")]
pub struct NoPhotos(String);

/// The folders the demo's photos may be in, in order: `--photos`
/// (`CATDOG_PHOTOS`), else `$CATDOG_DATA/catsdogs/test`, else the shared data
/// folder beside the checkout (tried from the notebook folder and the
/// repository root).
pub fn photo_candidates(settings: &Settings) -> Vec<PathBuf> {
    let process = &settings.process;
    if let Some(p) = &process.photos {
        return vec![p.clone()];
    }
    shared_data(settings)
        .into_iter()
        .map(|d| d.join("catsdogs/test"))
        .collect()
}

/// Where the shared data folder may be: `--data-dir` (`CATDOG_DATA`), else
/// `shared/data` beside the checkout (seen from the notebook folder or the
/// repository root).
pub fn shared_data(settings: &Settings) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = settings.process.data_dir.iter().cloned().collect();
    out.push(PathBuf::from("../../shared/data"));
    out.push(PathBuf::from("../shared/data"));
    out
}

/// Where the demo's photos are: the first of [`photo_candidates`] that exists.
pub fn photos_dir(settings: &Settings) -> Result<PathBuf, NoPhotos> {
    let candidates = photo_candidates(settings);
    candidates
        .iter()
        .find(|p| p.is_dir())
        .cloned()
        .ok_or_else(|| {
            NoPhotos(
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// Up to `n` files spread evenly over `files` (so a sorted cats/dogs folder
/// gives some of each).
pub fn spread(files: &[PathBuf], n: usize) -> Vec<PathBuf> {
    if files.len() <= n {
        return files.to_vec();
    }
    (0..n).map(|i| files[i * files.len() / n].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::output::Scores;

    fn prediction() -> Prediction {
        Prediction {
            label: "cat".into(),
            confidence: 0.75,
            scores: Scores(vec![("cat".into(), 0.75), ("dog".into(), 0.25)]),
            imagenet_top5: None,
            explanation: None,
        }
    }

    #[test]
    fn a_card_has_the_thumbnail_label_and_one_bar_per_class() {
        let picture = RgbImage::from_pixel(400, 200, image::Rgb([200, 30, 30]));
        let html = answer_card("<kitty>.jpg", &picture, &prediction());
        assert!(html.contains("data:image/jpeg;base64,"));
        assert!(html.contains("data-label=\"cat\""));
        assert!(html.contains("<b>cat</b> 75.0%"));
        assert_eq!(html.matches("catdog-bar").count(), 2);
        assert!(html.contains("width:25.0%"));
        assert!(html.contains("&lt;kitty&gt;.jpg") && !html.contains("<kitty>"));

        // The thumbnail keeps the aspect ratio within THUMBNAIL_SIDE.
        let b64 = html
            .split("base64,")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let thumb = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (160, 80));

        // With an explanation, the overlay leads and says what it shows.
        let mut explained = prediction();
        explained.explanation = Some(crate::model::explain::Explanation {
            label: "cat".into(),
            method: crate::model::explain::Method::Cam,
            grid: vec![vec![1.0]],
            overlay_png: Some(crate::model::explain::Png(vec![0x89, b'P', b'N', b'G'])),
        });
        let html = answer_card("kitty.jpg", &picture, &explained);
        assert!(html.contains("class=\"catdog-why\" src=\"data:image/png;base64,iVBORw==\""));
        assert!(html.contains("why: cat (cam)"));
        assert!(html.contains("<details>"));
    }

    #[test]
    fn skipped_files_say_why_and_text_lines_match() {
        let answers = vec![
            FileAnswer {
                path: "a/red.jpg".into(),
                outcome: Ok((RgbImage::new(2, 2), prediction())),
            },
            FileAnswer {
                path: "a/notes.jpg".into(),
                outcome: Err(std::io::Error::other("not a picture").into()),
            },
        ];
        let html = answers_html(&answers);
        assert_eq!(html.matches("class=\"catdog-card\"").count(), 2);
        assert!(html.contains("not a picture"));
        assert_eq!(
            answers_text(&answers),
            "red.jpg → cat (0.7500)\nnotes.jpg → skipped: not a picture\n"
        );
    }

    #[test]
    fn spread_takes_evenly_from_both_ends() {
        let files: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(i.to_string())).collect();
        let names: Vec<_> = spread(&files, 4)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(names, ["0", "2", "5", "7"]);
        assert_eq!(spread(&files[..3], 4).len(), 3);
    }
}
