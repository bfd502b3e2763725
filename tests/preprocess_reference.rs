//! Our preprocessing against a PIL + numpy reference on real photos, for both
//! presets: the tensor the model sees must be the one it was trained with.

use catdog::decode::{decode_rgb, DecodeLimits};
use catdog::model::contract::{Layout, Preprocessing};
use catdog::preprocess::Preprocessor;
use catdog_tests::*;

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
