//! Where an object is: bucket, key and, when the event names them, the
//! version and ETag it was about. S3 event notifications and Batch
//! Operations give keys URL-encoded (a space as `+`); they are decoded once,
//! here.

use std::fmt;

/// One S3 object, as an event or a listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub(crate) bucket: String,
    /// The key, decoded.
    pub(crate) key: String,
    pub(crate) version_id: Option<String>,
    /// As S3 gives it, without quotes.
    pub(crate) etag: Option<String>,
}

impl ObjectRef {
    pub(crate) fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            etag: None,
        }
    }

    pub(crate) fn with_version(mut self, version_id: Option<String>) -> Self {
        self.version_id = version_id.filter(|v| !v.is_empty() && v != "null");
        self
    }

    pub(crate) fn with_etag(mut self, etag: Option<String>) -> Self {
        self.etag = etag
            .map(|e| unquote(&e).to_string())
            .filter(|e| !e.is_empty());
        self
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        if let Some(v) = &self.version_id {
            write!(f, " (version {v})")?;
        }
        Ok(())
    }
}

/// ETags come quoted from S3's API and bare in events.
pub(crate) fn unquote(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// A key that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key {raw:?} is not valid URL-encoded UTF-8")]
pub(crate) struct KeyError {
    pub(crate) raw: String,
}

/// Decodes a key as S3 events and Batch Operations send it: `+` is a space,
/// `%XX` a byte, and the bytes UTF-8.
pub(crate) fn decode_event_key(raw: &str) -> Result<String, KeyError> {
    let plus_as_space = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| KeyError { raw: raw.into() })
}

/// `text` for a log line: each upload id in it (a run of exactly 32
/// lowercase hex digits, as `POST /uploads` makes them: the capability to
/// read that upload's answer) cut to its first 4 digits and `…`.
pub(crate) fn redact_upload_ids(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    let word = |b: u8| b.is_ascii_alphanumeric();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..].iter().take_while(|&&b| hex(b)).count();
        let bounded =
            (i == 0 || !word(bytes[i - 1])) && bytes.get(i + run).is_none_or(|&b| !word(b));
        if run == 32 && bounded {
            out.push_str(&text[i..i + 4]);
            out.push('…');
            i += run;
        } else if run > 0 {
            out.push_str(&text[i..i + run]);
            i += run;
        } else {
            let c = text[i..].chars().next().expect("i is a char boundary");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Whether `key` has a `.` or `..` segment (`a/../b`, `./a`): S3 takes it
/// literally, but HTTP clients and proxies may resolve it on the way to
/// another key, so catdog never sends one.
pub(crate) fn has_dot_segments(key: &str) -> bool {
    key.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// The part of S3 that events may ask catdog to read and tag: the uploads
/// bucket, under the uploads prefix (`CATDOG_UPLOADS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectScope {
    pub(crate) bucket: String,
    /// Empty: the whole bucket.
    pub(crate) prefix: String,
}

/// Why an event's object is refused before any S3 call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OutOfScope {
    #[error("this function classifies no S3 objects from events: no uploads area is configured (CATDOG_UPLOADS=s3://bucket/prefix/)")]
    NoScope,
    #[error("{object} is outside the uploads area s3://{bucket}/{prefix}")]
    Outside {
        object: String,
        bucket: String,
        prefix: String,
    },
    #[error("the key of {0} has `.` or `..` segments")]
    DotSegments(String),
}

impl ObjectScope {
    /// Whether `object` may be read and tagged on an event's word.
    pub(crate) fn admit(scope: Option<&Self>, object: &ObjectRef) -> Result<(), OutOfScope> {
        let scope = scope.ok_or(OutOfScope::NoScope)?;
        if has_dot_segments(&object.key) {
            return Err(OutOfScope::DotSegments(object.to_string()));
        }
        if object.bucket != scope.bucket || !object.key.starts_with(&scope.prefix) {
            return Err(OutOfScope::Outside {
                object: object.to_string(),
                bucket: scope.bucket.clone(),
                prefix: scope.prefix.clone(),
            });
        }
        Ok(())
    }
}

/// The bucket name of an S3 bucket ARN (`arn:aws:s3:::name`, in any partition).
pub(crate) fn bucket_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("s3"), Some(""), Some(""), Some(bucket)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!bucket.is_empty() && !bucket.contains('/')).then_some(bucket)
}

/// `s3://bucket/prefix` → (bucket, prefix), the prefix possibly empty.
pub(crate) fn split_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_decode_as_s3_encodes_them() {
        // As S3 sends "my photos/chat été+1.jpg".
        assert_eq!(
            decode_event_key("my+photos/chat+%C3%A9t%C3%A9%2B1.jpg").unwrap(),
            "my photos/chat été+1.jpg"
        );
        assert_eq!(decode_event_key("plain/key.png").unwrap(), "plain/key.png");
        assert!(decode_event_key("bad%FF%FE").is_err());
    }

    #[test]
    fn arns_and_uris_name_their_bucket() {
        assert_eq!(bucket_of_arn("arn:aws:s3:::photos"), Some("photos"));
        assert_eq!(bucket_of_arn("arn:aws-cn:s3:::photos"), Some("photos"));
        assert_eq!(bucket_of_arn("arn:aws:sqs:us-east-1:1:q"), None);
        assert_eq!(bucket_of_arn("photos"), None);
        assert_eq!(split_s3_uri("s3://b/p/q/"), Some(("b", "p/q/")));
        assert_eq!(split_s3_uri("s3://b"), Some(("b", "")));
        assert_eq!(split_s3_uri("s3:///k"), None);
        assert_eq!(split_s3_uri("/local"), None);
    }

    #[test]
    fn upload_ids_are_cut_from_log_text() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            redact_upload_ids(&format!("reading s3://up/incoming/{id}.png: NoSuchKey")),
            "reading s3://up/incoming/0123….png: NoSuchKey"
        );
        // Not an id: longer or shorter runs, upper case, part of a word.
        for kept in [
            format!("{id}0"),
            id[1..].to_string(),
            id.to_uppercase(),
            format!("x{id}"),
            "chat été.jpg".into(),
        ] {
            assert_eq!(redact_upload_ids(&kept), kept);
        }
    }

    #[test]
    fn events_may_name_the_uploads_area_only() {
        let scope = ObjectScope {
            bucket: "uploads".into(),
            prefix: "incoming/".into(),
        };
        let admit = |b: &str, k: &str| ObjectScope::admit(Some(&scope), &ObjectRef::new(b, k));
        assert_eq!(admit("uploads", "incoming/cat.jpg"), Ok(()));
        assert!(matches!(
            admit("uploads", "batch/manifests/m.csv"),
            Err(OutOfScope::Outside { .. })
        ));
        assert!(matches!(
            admit("other", "incoming/cat.jpg"),
            Err(OutOfScope::Outside { .. })
        ));
        assert!(matches!(
            admit("uploads", "incoming/../catdog-results/x.json"),
            Err(OutOfScope::DotSegments(_))
        ));
        assert!(matches!(
            admit("uploads", "incoming/./x.jpg"),
            Err(OutOfScope::DotSegments(_))
        ));
        assert_eq!(admit("uploads", "incoming/a..b/x.jpg"), Ok(()));
        assert_eq!(
            ObjectScope::admit(None, &ObjectRef::new("uploads", "incoming/x.jpg")),
            Err(OutOfScope::NoScope)
        );
    }

    #[test]
    fn etags_lose_their_quotes_and_null_versions_are_none() {
        let o = ObjectRef::new("b", "k")
            .with_etag(Some("\"abc\"".into()))
            .with_version(Some("null".into()));
        assert_eq!(o.etag.as_deref(), Some("abc"));
        assert_eq!(o.version_id, None);
        assert_eq!(o.to_string(), "s3://b/k");
    }
}
