//! The model contract: what a self-describing ONNX classifier tells us about
//! itself (class labels, input preprocessing, output kind), read from the ONNX
//! custom metadata and overridable from the CLI/env.
//!
//! Keys are documented in `models/README.md`; keep the two in step.

use serde::{Deserialize, Serialize};

/// Metadata key holding a JSON array of class names in output order.
pub const KEY_LABELS: &str = "labels";
/// Metadata key holding a preset name (`caffe`, `torch`) or a JSON object.
pub const KEY_PREPROCESSING: &str = "preprocessing";
/// Metadata key saying whether outputs are `"logits"` or `"probabilities"`.
pub const KEY_OUTPUT: &str = "output";
/// Metadata key naming the model on the Open Inference Protocol routes
/// (`/v2/models/{name}`); [`DEFAULT_NAME`] without it.
pub const KEY_NAME: &str = "name";
/// The model's name when neither the settings nor the metadata give one.
pub const DEFAULT_NAME: &str = "catdog";

/// Why a model's contract could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("`labels` must be a JSON array of strings (got {0})")]
    Labels(String),
    #[error("`preprocessing` must be \"caffe\", \"torch\" or a JSON object: {0}")]
    Preprocessing(String),
    #[error("`output` must be \"logits\" or \"probabilities\" (got {0:?})")]
    Output(String),
    #[error("`name` must be 1 to 128 letters, digits, `_`, `-` or `.`, not starting with `.` (got {0:?})")]
    Name(String),
}

/// Tensor memory layout of the model's image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// `[batch, channels, height, width]` (PyTorch, ONNX zoo).
    #[serde(rename = "NCHW")]
    Nchw,
    /// `[batch, height, width, channels]` (Keras/TensorFlow).
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColorOrder {
    #[serde(rename = "RGB")]
    Rgb,
    #[serde(rename = "BGR")]
    Bgr,
}

/// How the decoded picture is brought to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Resize straight to `size`, ignoring the aspect ratio (Keras `load_img(target_size=..)`).
    Stretch,
    /// Resize so the shorter side is `resize_shorter`, keeping the aspect ratio,
    /// then center-crop `size` (torchvision `Resize(256)` + `CenterCrop(224)`).
    ShorterSideCenterCrop,
}

/// Resampling filter, with Pillow's semantics (the filters models are trained with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos3,
}

/// Everything needed to turn an RGB picture into the model's input tensor:
/// `value = (pixel * scale - mean[c]) / std[c]`, channels in the model's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// Preset this came from, if any (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Input layout; `None` means "read it off the input shape".
    #[serde(default)]
    pub layout: Option<Layout>,
    pub color: ColorOrder,
    /// Model input `[height, width]`.
    pub size: [u32; 2],
    #[serde(default = "default_resize")]
    pub resize: ResizeMode,
    /// Target of the shorter side for `shorter_side_center_crop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_shorter: Option<u32>,
    #[serde(default = "default_filter")]
    pub filter: Filter,
    /// Multiplied into 0..255 pixel values before mean/std.
    pub scale: f32,
    /// Per channel, in the model's channel order.
    pub mean: [f32; 3],
    /// Per channel, in the model's channel order.
    pub std: [f32; 3],
}

fn default_resize() -> ResizeMode {
    ResizeMode::Stretch
}
fn default_filter() -> Filter {
    Filter::Bilinear
}

impl Preprocessing {
    /// Keras `applications.vgg16.preprocess_input` ("caffe" mode) after
    /// `load_img(target_size=(224, 224))`: nearest resize, RGB→BGR, ImageNet
    /// BGR means subtracted, no scaling.
    pub fn caffe() -> Self {
        Self {
            preset: Some("caffe".into()),
            layout: None,
            color: ColorOrder::Bgr,
            size: [224, 224],
            resize: ResizeMode::Stretch,
            resize_shorter: None,
            filter: Filter::Nearest,
            scale: 1.0,
            mean: [103.939, 116.779, 123.68],
            std: [1.0, 1.0, 1.0],
        }
    }

    /// torchvision ImageNet evaluation transform: bilinear resize of the shorter
    /// side to 256, center crop 224, /255, ImageNet mean/std, RGB.
    pub fn torch() -> Self {
        Self {
            preset: Some("torch".into()),
            layout: None,
            color: ColorOrder::Rgb,
            size: [224, 224],
            resize: ResizeMode::ShorterSideCenterCrop,
            resize_shorter: Some(256),
            filter: Filter::Bilinear,
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// Parses a metadata/env value: a preset name or a JSON object.
    pub fn parse(text: &str) -> Result<Self, ContractError> {
        let t = text.trim();
        let t = t
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(t);
        match t {
            "caffe" => return Ok(Self::caffe()),
            "torch" => return Ok(Self::torch()),
            _ => {}
        }
        if !t.starts_with('{') {
            return Err(ContractError::Preprocessing(format!(
                "unknown preset {t:?}"
            )));
        }
        let p: Preprocessing =
            serde_json::from_str(t).map_err(|e| ContractError::Preprocessing(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), ContractError> {
        let bad = |m: String| Err(ContractError::Preprocessing(m));
        if self.size[0] == 0 || self.size[1] == 0 || self.size[0] > 4096 || self.size[1] > 4096 {
            return bad(format!("size {:?} must be within 1..=4096", self.size));
        }
        if self.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return bad("std must be finite and non-zero".into());
        }
        if !self.scale.is_finite() || self.mean.iter().any(|m| !m.is_finite()) {
            return bad("scale and mean must be finite".into());
        }
        if self.resize == ResizeMode::ShorterSideCenterCrop {
            match self.resize_shorter {
                Some(s) if s >= self.size[0].max(self.size[1]) && s <= 8192 => {}
                _ => return bad("shorter_side_center_crop needs resize_shorter >= both sides of size (and <= 8192)".into()),
            }
        }
        Ok(())
    }
}

/// The one rule for every contract value: what the user gave wins, then the
/// model's metadata, then the default; with where it came from
/// (`override`, `metadata` or `default`). `None` when none of them has it.
pub fn resolve<T>(
    given: Option<T>,
    metadata: Option<&str>,
    parse: impl Fn(&str) -> Result<T, ContractError>,
    default: Option<T>,
) -> Result<Option<(T, &'static str)>, ContractError> {
    Ok(match (given, metadata) {
        (Some(v), _) => Some((v, "override")),
        (None, Some(text)) => Some((parse(text)?, "metadata")),
        (None, None) => default.map(|d| (d, "default")),
    })
}

/// Checks a model name: it is a path segment of the `/v2/models/{name}` routes.
pub fn parse_name(text: &str) -> Result<String, ContractError> {
    let name = text.trim();
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(ContractError::Name(name.to_string()))
    }
}

/// Whether the model's output already is a probability distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Logits,
    Probabilities,
}

impl OutputKind {
    pub fn parse(text: &str) -> Result<Self, ContractError> {
        match text.trim().trim_matches('"') {
            "logits" | "scores" => Ok(Self::Logits),
            "probabilities" | "softmax" => Ok(Self::Probabilities),
            other => Err(ContractError::Output(other.into())),
        }
    }
}

/// Parses a `labels` value: a JSON array of non-empty, distinct strings.
pub fn parse_labels(text: &str) -> Result<Vec<String>, ContractError> {
    let labels: Vec<String> =
        serde_json::from_str(text.trim()).map_err(|e| ContractError::Labels(e.to_string()))?;
    if labels.is_empty() {
        return Err(ContractError::Labels("an empty array".into()));
    }
    if labels.iter().any(|l| l.trim().is_empty()) {
        return Err(ContractError::Labels("an empty name".into()));
    }
    let mut sorted = labels.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != labels.len() {
        return Err(ContractError::Labels("duplicate names".into()));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_by_name_and_quoted() {
        assert_eq!(
            Preprocessing::parse("caffe").unwrap(),
            Preprocessing::caffe()
        );
        assert_eq!(
            Preprocessing::parse("\"torch\"").unwrap(),
            Preprocessing::torch()
        );
        assert!(Preprocessing::parse("keras").is_err());
    }

    #[test]
    fn json_object_round_trips_and_is_validated() {
        let json = serde_json::to_string(&Preprocessing::torch()).unwrap();
        assert_eq!(Preprocessing::parse(&json).unwrap(), Preprocessing::torch());
        let p = Preprocessing::parse(
            r#"{"layout":"NHWC","color":"BGR","size":[32,48],"scale":1,"mean":[1,2,3],"std":[1,1,1]}"#,
        )
        .unwrap();
        assert_eq!(p.layout, Some(Layout::Nhwc));
        assert_eq!(p.size, [32, 48]);
        assert_eq!(p.resize, ResizeMode::Stretch);
        assert_eq!(p.filter, Filter::Bilinear);
        // zero std would divide by zero
        assert!(Preprocessing::parse(
            r#"{"color":"RGB","size":[2,2],"scale":1,"mean":[0,0,0],"std":[0,1,1]}"#
        )
        .is_err());
        // a typo in a key is refused rather than silently defaulted
        assert!(Preprocessing::parse(
            r#"{"colour":"RGB","color":"RGB","size":[2,2],"scale":1,"mean":[0,0,0],"std":[1,1,1]}"#
        )
        .is_err());
    }

    #[test]
    fn labels_are_checked() {
        assert_eq!(
            parse_labels(r#"["cat","dog"]"#).unwrap(),
            vec!["cat", "dog"]
        );
        assert!(parse_labels("[]").is_err());
        assert!(parse_labels(r#"["cat","cat"]"#).is_err());
        assert!(parse_labels(r#"{"0":"cat"}"#).is_err());
    }

    #[test]
    fn names_are_path_segments() {
        assert_eq!(parse_name(" catdog-v2.1 ").unwrap(), "catdog-v2.1");
        for bad in ["", "a/b", "..", ".hidden", "café", "a b", &"x".repeat(129)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }
}
