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
        let want: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let (max, mean) = max_abs_diff(&ours, &want);
        println!("{:5} {:5} max {max:.5} mean {mean:.6}  {}", r.kind, r.preset, r.image);
        let w = worst.entry((r.kind.clone(), r.preset.clone())).or_default();
        w.0 = w.0.max(max);
        w.1 = w.1.max(mean);
    }
    for ((kind, preset), (max, mean)) in &worst {
        println!("worst {kind} {preset}: max abs diff {max:.5}, mean abs diff {mean:.6}");
    }
    // Lossless input: only the resize and the arithmetic can differ.
    // torch: one 8-bit level is 1/255/0.225 = 0.0174; caffe: one level is 1.0.
    let (png_torch, _) = worst[&("png".to_string(), "torch".to_string())];
    let (png_caffe, _) = worst[&("png".to_string(), "caffe".to_string())];
    assert!(png_torch < 1e-6, "torch resize differs from Pillow: {png_torch}");
    assert!(png_caffe < 1e-6, "caffe resize differs from Pillow: {png_caffe}");
    // JPEG: decoders (zune-jpeg vs libjpeg-turbo) may differ by a few levels on
    // some pixels; the mean difference must stay well under one level.
    let (_, jpeg_torch_mean) = worst[&("jpeg".to_string(), "torch".to_string())];
    let (_, jpeg_caffe_mean) = worst[&("jpeg".to_string(), "caffe".to_string())];
    assert!(jpeg_torch_mean < 0.0174 * 0.5, "torch on JPEG: mean diff {jpeg_torch_mean}");
    assert!(jpeg_caffe_mean < 0.5, "caffe on JPEG: mean diff {jpeg_caffe_mean}");
}
