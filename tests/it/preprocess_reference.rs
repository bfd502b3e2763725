//! Our preprocessing against a PIL + numpy reference on real photos, for both
//! presets: the tensor the model sees must be the one it was trained with.

use crate::support::*;
use catdog::decode::{decode_rgb, DecodeLimits};
use catdog::preprocess::{Layout, Preprocessing, Preprocessor};

#[derive(serde::Deserialize)]
struct Ref {
    image: String,
    preset: String,
    kind: String,
    tensor: String,
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, f64) {
    assert_eq!(a.len(), b.len());
    let mut max = 0f32;
    let mut sum = 0f64;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        max = max.max(d);
        sum += f64::from(d);
    }
    (max, sum / a.len() as f64)
}

#[test]
fn tensors_match_pil_numpy_reference() {
    if shared_data("tensors_match_pil_numpy_reference").is_none() {
        return;
    }
    let index: Vec<Ref> =
        serde_json::from_slice(&std::fs::read(fixture("preprocess/index.json")).unwrap()).unwrap();
    assert!(index.len() >= 20, "too few references");
    let mut worst = std::collections::BTreeMap::<(String, String), (f32, f64)>::new();
    for r in &index {
        let bytes = std::fs::read(&r.image).unwrap();
        let picture = decode_rgb(&bytes, DecodeLimits::default()).unwrap();
        let (spec, layout) = match r.preset.as_str() {
            "torch" => (Preprocessing::torch(), Layout::Nchw),
            _ => (Preprocessing::caffe(), Layout::Nhwc),
        };
        let ours = Preprocessor::new(spec, layout).tensor(&picture);
        let raw = std::fs::read(&r.tensor).unwrap();
        let want: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let (max, mean) = max_abs_diff(&ours, &want);
        println!(
            "{:5} {:5} max {max:.5} mean {mean:.6}  {}",
            r.kind, r.preset, r.image
        );
        let w = worst.entry((r.kind.clone(), r.preset.clone())).or_default();
        w.0 = w.0.max(max);
        w.1 = w.1.max(mean);
    }
    for ((kind, preset), (max, mean)) in &worst {
        println!("worst {kind} {preset}: max abs diff {max:.5}, mean abs diff {mean:.6}");
    }
    // JPEG decoding (libjpeg-turbo, as in Pillow) and resizing (Pillow's
    // algorithm) are bit-exact; only f32 arithmetic order could differ.
    for ((kind, preset), (max, _)) in &worst {
        assert!(
            *max < 1e-5,
            "{kind}/{preset}: max abs diff {max} from the PIL + numpy reference"
        );
    }
}

/// EXIF orientation is applied like PIL's `ImageOps.exif_transpose`: the
/// fixture is stored 40×20 with orientation 6 (rotate 90° to view), so it is
/// used as 20×40.
#[test]
fn exif_orientation_is_applied() {
    let bytes = std::fs::read(fixture("images/red_exif_rot6.jpg")).unwrap();
    let picture = decode_rgb(&bytes, DecodeLimits::default()).unwrap();
    assert_eq!(picture.dimensions(), (20, 40));
    let plain = decode_rgb(
        &std::fs::read(fixture("images/red.jpg")).unwrap(),
        DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(plain.dimensions(), (300, 200));
}

/// Every other accepted form becomes the same 8-bit RGB PIL's `convert("RGB")` gives.
#[test]
fn grayscale_16bit_palette_alpha_and_cmyk_become_rgb() {
    let px = |name: &str| {
        let p = decode_rgb(
            &std::fs::read(fixture(&format!("images/{name}"))).unwrap(),
            DecodeLimits::default(),
        )
        .unwrap();
        *p.get_pixel(p.width() / 2, p.height() / 2)
    };
    assert_eq!(px("gray.png").0, [128, 128, 128]);
    assert_eq!(px("red_palette.png").0, [204, 51, 51]); // PIL stored red in its web palette
    assert_eq!(px("red_rgba.png").0, [220, 30, 30]);
    // 40000/65535 of full scale ≈ 155.6. (Pillow's own convert("RGB") clips
    // 16-bit grey to 255 here; we scale, which is what the picture means.)
    let g16 = px("gray16.png").0;
    assert!(g16.iter().all(|v| (155..=156).contains(v)), "{g16:?}");
    let cmyk = px("red_cmyk.jpg").0;
    assert!(
        cmyk[0] > 180 && cmyk[1] < 80 && cmyk[2] < 80,
        "CMYK red decoded as {cmyk:?}"
    );
    assert_eq!(px("anim_red_then_blue.gif").0, [220, 30, 30], "first frame");
}
