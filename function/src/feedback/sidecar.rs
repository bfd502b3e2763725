//! A correction's names (`<label>/<sha256>.<ext>` and `<label>/<sha256>.json`)
//! and its sidecar: the record that fine-tuning reads back to say how the
//! model that answered did on the pictures people corrected.

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};
use crate::model::output::Prediction;

/// What is written beside a corrected picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Sidecar {
    /// The label the person gave (the folder it is stored in).
    pub(crate) label: String,
    /// What the model answered for the picture when it was corrected.
    pub(crate) answered: String,
    /// The probability of that answer.
    pub(crate) confidence: f32,
    /// The answering model's name.
    pub(crate) model: String,
    /// The answering model's SHA-256 (absent while a local file's digest
    /// was still being computed).
    pub(crate) model_sha256: Option<String>,
    /// When, in RFC 3339 (UTC).
    pub(crate) time: String,
}

/// A picture, the label a person says is right, and its sidecar.
#[derive(Debug, Clone)]
pub(crate) struct Correction {
    pub(crate) picture: Bytes,
    pub(crate) sha256: String,
    ext: &'static str,
    content_type: &'static str,
    pub(crate) sidecar: Sidecar,
}

/// A picture's type, as its bytes say, among those uploads may be: its
/// Content-Type and the extension fine-tuning reads.
fn picture_type(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    let mime = image::guess_format(bytes).ok()?.to_mime_type();
    crate::objects::UPLOAD_TYPES
        .iter()
        .find(|(t, _)| *t == mime)
        .map(|(t, ext)| (*t, ext.trim_start_matches('.')))
}

impl Correction {
    /// `picture` (already decoded and classified: `answered`) is `label`,
    /// says a person, now.
    pub(crate) fn new(
        label: String,
        picture: Bytes,
        answered: &Prediction,
        model: &crate::model::Classifier,
    ) -> Result<Self, ApiError> {
        let (content_type, ext) = picture_type(&picture).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnsupportedImageFormat,
                "corrections are stored as JPEG, PNG, WebP, GIF or BMP: send the picture in one of them",
            )
        })?;
        Ok(Self {
            sha256: hex::encode(Sha256::digest(&picture)),
            picture,
            ext,
            content_type,
            sidecar: Sidecar {
                label,
                answered: answered.label.clone(),
                confidence: answered.confidence,
                model: model.name().to_string(),
                model_sha256: model.sha256().map(str::to_string),
                time: DateTime::from(std::time::SystemTime::now())
                    .fmt(DateTimeFormat::DateTime)
                    .unwrap_or_default(),
            },
        })
    }

    /// `<label>/<sha256>.<ext>`.
    pub(crate) fn picture_key(&self) -> String {
        format!("{}/{}.{}", self.sidecar.label, self.sha256, self.ext)
    }

    /// `<label>/<sha256>.json`.
    pub(crate) fn sidecar_key(&self) -> String {
        format!("{}/{}.json", self.sidecar.label, self.sha256)
    }

    pub(crate) fn content_type(&self) -> &'static str {
        self.content_type
    }

    pub(crate) fn sidecar_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.sidecar).expect("a sidecar serializes")
    }
}

/// The sidecar beside `picture` (`<stem>.json`), if it has one that reads.
pub(crate) fn beside(picture: &std::path::Path) -> Option<Sidecar> {
    let text = std::fs::read(picture.with_extension("json")).ok()?;
    serde_json::from_slice(&text).ok()
}
