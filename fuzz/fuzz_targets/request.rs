//! One request body through everything catdog does before inference: the
//! body reader (raw image, multipart, JSON/base64, chosen by the first input
//! byte as the Content-Type would), the decoder with its limits, and both
//! preprocessing presets (direct resize NHWC, shorter-side + centre crop NCHW).
//! Any panic, hang or out-of-bounds access is a finding; errors are fine.
#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use catdog::decode::{decode_rgb, DecodeLimits};
use catdog::http::input::{read_images, OtherTypes, Pictures};
use catdog::preprocess::{Layout, Preprocessing, Preprocessor};
use catdog::Limits;
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
});

static PREPROCESSORS: LazyLock<[Preprocessor; 2]> = LazyLock::new(|| {
    [
        Preprocessor::new(Preprocessing::caffe(), Layout::Nhwc),
        Preprocessor::new(Preprocessing::torch(), Layout::Nchw),
    ]
});

const CONTENT_TYPES: [&str; 5] = [
    "image/jpeg",
    "application/octet-stream",
    "multipart/form-data; boundary=XYZ",
    "application/json",
    "image/png",
];

/// The service's limits, with the pixel cap lowered so a legitimately large
/// picture does not exhaust the fuzzer's memory (the cap itself is under test).
fn limits() -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        decode: DecodeLimits {
            max_pixels: 4_000_000,
            ..DecodeLimits::default()
        },
        ..Limits::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let ctype = CONTENT_TYPES[selector as usize % CONTENT_TYPES.len()];
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    let limits = limits();
    let Ok(pictures) = RUNTIME.block_on(read_images(&headers, Body::from(body.to_vec()), &limits, OtherTypes::Refuse)) else {
        return;
    };
    // A picture by reference (`{"s3": …}`) is read from S3, not from the body.
    let Pictures::Bytes(images) = pictures else {
        return;
    };
    assert!(!images.is_empty() && images.len() <= limits.max_batch);
    for image in images {
        let Ok(picture) = decode_rgb(&image, limits.decode) else {
            continue;
        };
        assert!(u64::from(picture.width()) * u64::from(picture.height()) <= limits.decode.max_pixels);
        for pre in PREPROCESSORS.iter() {
            let tensor = pre.tensor(&picture);
            assert_eq!(tensor.len(), pre.tensor_len());
            assert!(tensor.iter().all(|v| v.is_finite()));
        }
    }
});
