//! The preprocessing spec: how a picture becomes a model's input tensor
//! (size, resize, filter, channel order, layout, scale, mean and std), with
//! its presets and its parsing from text (a preset name or a JSON object,
//! as the model's `preprocessing` metadata or `--preprocessing` gives it).
//!
//! It is preprocessing's own vocabulary: the model contract
//! (`model::contract`) says where a model's spec comes from, this module
//! says what a spec is, so the model layer imports it and not the reverse.
//! The JSON names are documented in `models/README.md`; keep the two in step.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a preprocessing spec was refused (the detail says what is wrong).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`preprocessing` must be \"caffe\", \"torch\" or a JSON object: {0}")]
pub struct SpecError(pub String);

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

pub use pillow_resize::Filter;

/// Everything needed to turn an RGB picture into the model's input tensor:
/// `value = (pixel * scale - mean[c]) / std[c]`, channels in the model's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// Preset this came from, if any (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) preset: Option<String>,
    /// Input layout; `None` means "read it off the input shape".
    #[serde(default)]
    pub(crate) layout: Option<Layout>,
    pub(crate) color: ColorOrder,
    /// Model input `[height, width]`.
    pub(crate) size: [u32; 2],
    #[serde(default = "default_resize")]
    pub(crate) resize: ResizeMode,
    /// Target of the shorter side for `shorter_side_center_crop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resize_shorter: Option<u32>,
    #[serde(default = "default_filter")]
    pub(crate) filter: Filter,
    /// Multiplied into 0..255 pixel values before mean/std.
    pub(crate) scale: f32,
    /// Per channel, in the model's channel order.
    pub(crate) mean: [f32; 3],
    /// Per channel, in the model's channel order.
    pub(crate) std: [f32; 3],
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

    fn validate(&self) -> Result<(), SpecError> {
        let bad = |m: String| Err(SpecError(m));
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

impl FromStr for Preprocessing {
    type Err = SpecError;

    /// Parses a metadata/env value: a preset name (bare or, as ONNX metadata
    /// often holds it, a JSON string) or a JSON object.
    fn from_str(text: &str) -> Result<Self, SpecError> {
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
            return Err(SpecError(format!("unknown preset {t:?}")));
        }
        let p: Preprocessing = serde_json::from_str(t).map_err(|e| SpecError(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Preprocessing, SpecError> {
        text.parse()
    }

    #[test]
    fn presets_by_name_and_quoted() {
        assert_eq!(parse("caffe").unwrap(), Preprocessing::caffe());
        assert_eq!(parse("\"torch\"").unwrap(), Preprocessing::torch());
        assert!(parse("keras").is_err());
    }

    #[test]
    fn json_object_round_trips_and_is_validated() {
        let json = serde_json::to_string(&Preprocessing::torch()).unwrap();
        assert_eq!(parse(&json).unwrap(), Preprocessing::torch());
        let p = parse(
            r#"{"layout":"NHWC","color":"BGR","size":[32,48],"scale":1,"mean":[1,2,3],"std":[1,1,1]}"#,
        )
        .unwrap();
        assert_eq!(p.layout, Some(Layout::Nhwc));
        assert_eq!(p.size, [32, 48]);
        assert_eq!(p.resize, ResizeMode::Stretch);
        assert_eq!(p.filter, Filter::Bilinear);
        // zero std would divide by zero
        assert!(
            parse(r#"{"color":"RGB","size":[2,2],"scale":1,"mean":[0,0,0],"std":[0,1,1]}"#)
                .is_err()
        );
        // a typo in a key is refused rather than silently defaulted
        assert!(parse(
            r#"{"colour":"RGB","color":"RGB","size":[2,2],"scale":1,"mean":[0,0,0],"std":[1,1,1]}"#
        )
        .is_err());
    }
}
