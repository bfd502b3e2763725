//! Model locations: `s3://bucket/key`, `https://…` (or `http://`), or a
//! local path, parsed once and shown without secrets or folders.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::SourceError;
use crate::messages::file_name;

/// A parsed model location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    S3 { bucket: String, key: String },
    Http(String),
    File(PathBuf),
}

impl FromStr for ModelUri {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SourceError::InvalidUri(s.into()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self::S3 {
                    bucket: bucket.into(),
                    key: key.into(),
                }),
                _ => Err(SourceError::InvalidUri(s.into())),
            };
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            return reqwest::Url::parse(s)
                .map(|_| Self::Http(s.into()))
                .map_err(|_| SourceError::InvalidUri(s.into()));
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        if s.contains("://") {
            return Err(SourceError::InvalidUri(s.into()));
        }
        Ok(Self::File(PathBuf::from(s)))
    }
}

impl fmt::Display for ModelUri {
    /// Shows the location without secrets: URL credentials and query strings
    /// (pre-signed URLs carry signatures there) are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Self::Http(url) => match reqwest::Url::parse(url) {
                Ok(mut u) => {
                    let _ = u.set_username("");
                    let _ = u.set_password(None);
                    u.set_query(None);
                    u.set_fragment(None);
                    write!(f, "{u}")
                }
                Err(_) => write!(f, "<invalid url>"),
            },
            // Answers, /health and /model show this: a file name, never
            // the server's folders.
            Self::File(p) => f.write_str(&file_name(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_uri() {
        assert_eq!(
            "s3://models/cats/v1.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::S3 {
                bucket: "models".into(),
                key: "cats/v1.onnx".into()
            }
        );
        assert!(matches!(
            "https://x.test/m.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::Http(_)
        ));
        assert_eq!(
            "file:///m.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::File("/m.onnx".into())
        );
        assert_eq!(
            "./m.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::File("./m.onnx".into())
        );
        for bad in ["", "s3://bucket", "s3:///key", "ftp://x/y"] {
            assert!(bad.parse::<ModelUri>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_hides_credentials_and_signatures() {
        let uri: ModelUri = "https://user:pw@x.test/m.onnx?X-Amz-Signature=abc"
            .parse()
            .unwrap();
        assert_eq!(uri.to_string(), "https://x.test/m.onnx");
    }
}
