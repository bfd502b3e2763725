//! The JSON record written for each object at `<prefix><key>.json`: what
//! was classified (bucket, key, version, ETag), by which model, the answer
//! or why there is none, and where the time went. Serialized as it is
//! documented (the type is its schema), and read back to answer a repeated
//! event without a second inference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::failure::Failure;
use super::location::ObjectRef;

/// One object's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObjectRecord {
    pub(crate) bucket: String,
    pub(crate) key: String,
    /// The version classified, where the bucket keeps versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version_id: Option<String>,
    /// The ETag of the bytes classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etag: Option<String>,
    pub(crate) model: RecordModel,
    /// The answer, or why there is none.
    #[serde(flatten)]
    pub(crate) result: RecordResult,
    pub(crate) timings_ms: ObjectTimings,
}

/// The model that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct RecordModel {
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    /// SHA-256 of the model file: with the object's ETag or version, what
    /// makes a record current.
    pub(crate) sha256: String,
}

/// The label, or the failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum RecordResult {
    Classified {
        label: String,
        confidence: f32,
        scores: BTreeMap<String, f32>,
    },
    Failed {
        error: Failure,
    },
}

/// Where one object's time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct ObjectTimings {
    /// The GET of the object (first byte to last).
    pub(crate) get: f64,
    pub(crate) decode: f64,
    pub(crate) preprocess: f64,
    pub(crate) inference: f64,
    /// Writing the tags and the record.
    pub(crate) write: f64,
    pub(crate) total: f64,
}

impl ObjectRecord {
    /// Whether this record answers for `object` as classified by the model
    /// with digest `sha256`: the same model, and the same bytes (the same
    /// version where the bucket keeps them, else the same ETag). Failed
    /// records never do (the failure may have passed, or the rules changed).
    pub(crate) fn is_current_for(&self, object: &ObjectRef, sha256: &str) -> bool {
        if self.model.sha256 != sha256 || matches!(self.result, RecordResult::Failed { .. }) {
            return false;
        }
        match (&object.version_id, &object.etag) {
            (Some(v), _) => self.version_id.as_ref() == Some(v),
            (None, Some(e)) => self.etag.as_ref() == Some(e),
            (None, None) => false,
        }
    }

    /// The label, when classified.
    pub(crate) fn label(&self) -> Option<&str> {
        match &self.result {
            RecordResult::Classified { label, .. } => Some(label),
            RecordResult::Failed { .. } => None,
        }
    }

    /// The answer as `catdog predict --json` prints one (label, confidence,
    /// scores), when classified.
    pub fn answer(&self) -> Option<(&str, f32, serde_json::Value)> {
        match &self.result {
            RecordResult::Classified {
                label,
                confidence,
                scores,
            } => Some((
                label,
                *confidence,
                serde_json::json!({"label": label, "confidence": confidence, "scores": scores}),
            )),
            RecordResult::Failed { .. } => None,
        }
    }

    /// A short line for a Batch Operations report or a log: `dog 0.9731`,
    /// or the failure.
    pub(crate) fn summary(&self) -> String {
        match &self.result {
            RecordResult::Classified {
                label, confidence, ..
            } => format!("{label} {confidence:.4}"),
            RecordResult::Failed { error } => error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn record(version: Option<&str>, etag: Option<&str>, sha: &str) -> ObjectRecord {
        ObjectRecord {
            bucket: "b".into(),
            key: "k.jpg".into(),
            version_id: version.map(Into::into),
            etag: etag.map(Into::into),
            model: RecordModel {
                name: "m".into(),
                version: None,
                sha256: sha.into(),
            },
            result: RecordResult::Classified {
                label: "dog".into(),
                confidence: 0.9,
                scores: BTreeMap::from([("cat".into(), 0.1), ("dog".into(), 0.9)]),
            },
            timings_ms: ObjectTimings::default(),
        }
    }

    #[test]
    fn a_record_is_current_for_the_same_bytes_and_model_only() {
        let obj = ObjectRef::new("b", "k.jpg").with_etag(Some("e1".into()));
        assert!(record(None, Some("e1"), "s").is_current_for(&obj, "s"));
        assert!(!record(None, Some("e2"), "s").is_current_for(&obj, "s"));
        assert!(!record(None, Some("e1"), "t").is_current_for(&obj, "s"));
        let versioned = obj.clone().with_version(Some("v2".into()));
        assert!(record(Some("v2"), Some("zz"), "s").is_current_for(&versioned, "s"));
        assert!(!record(Some("v1"), Some("e1"), "s").is_current_for(&versioned, "s"));
        assert!(!record(None, None, "s").is_current_for(&ObjectRef::new("b", "k.jpg"), "s"));
    }

    #[test]
    fn the_record_reads_back_as_written_in_both_forms() {
        let ok = record(Some("v"), Some("e"), "s");
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["label"], "dog");
        assert_eq!(json["model"]["sha256"], "s");
        assert_eq!(serde_json::from_value::<ObjectRecord>(json).unwrap(), ok);
        let failed = ObjectRecord {
            result: RecordResult::Failed {
                error: Failure::permanent(ErrorCode::InvalidImage, "not a picture"),
            },
            ..ok
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["error"]["code"], "invalid_image");
        assert_eq!(json["error"]["kind"], "permanent");
        assert!(json.get("label").is_none());
        assert_eq!(
            serde_json::from_value::<ObjectRecord>(json).unwrap(),
            failed
        );
        assert_eq!(failed.summary(), "invalid_image: not a picture");
    }
}
