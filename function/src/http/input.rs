//! Reading request bodies within the size limit, and the pictures out of a
//! `/predict` request, in every accepted form:
//! a raw image body, `multipart/form-data` with one or more files, or JSON
//! `{"image": "<base64>"}` / `{"images": [...]}` (`data:` URLs accepted).
//!
//! The body is read into memory up to the limit and no further: a declared
//! `Content-Length` over the limit is refused before reading, and a body that
//! grows past it (chunked) is cut off as soon as it does.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use base64::Engine;
use bytes::Bytes;

use crate::error::ErrorCode;
use crate::http::types::JsonPictures;
use crate::limits::Limits;

/// How a route reads a body whose Content-Type is none of the accepted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherTypes {
    /// Refused with 415 (every route but the tutorial's).
    Refuse,
    /// Read as JSON, as the tutorial's Flask backend did
    /// (`request.get_json(force=True)`): its jQuery page posts JSON with
    /// jQuery's default `application/x-www-form-urlencoded`.
    AsJson,
}

/// Why a request's body gave no pictures to classify. Each variant is
/// the client's; [`ErrorCode`] says which code and status it answers with.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "{0} is not accepted: send the picture as image/* (or application/octet-stream), \
             multipart/form-data, or application/json {{\"image\": \"<base64>\"}}"
    )]
    UnsupportedMediaType(String),
    /// What the route wanted instead.
    #[error("the request body is empty: send {0}")]
    Empty(&'static str),
    #[error("the request body is over the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the request body could not be read: {0}")]
    Unreadable(String),
    #[error("{0}")]
    Json(String),
    /// A picture's base64, by its 0-based place.
    #[error("image {}: {source}", .index + 1)]
    Base64 { index: usize, source: Base64Error },
    #[error("{0}")]
    Multipart(String),
    /// The first [`NAMED_FIELDS`] field names, and how many fields there were.
    #[error("the multipart form has no file field ({count} fields, the first named {first:?}); add the picture as a file")]
    NoFileField { first: Vec<String>, count: usize },
    #[error("the request holds no picture")]
    NoPicture,
    #[error("{count} pictures in one request; the limit is {limit}")]
    TooManyPictures { count: usize, limit: usize },
}

impl From<&InputError> for ErrorCode {
    fn from(e: &InputError) -> Self {
        match e {
            InputError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            InputError::Empty(_) => ErrorCode::EmptyBody,
            InputError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            InputError::Unreadable(_) => ErrorCode::InvalidBody,
            InputError::Json(_) => ErrorCode::InvalidJson,
            InputError::Base64 { .. } => ErrorCode::InvalidBase64,
            InputError::Multipart(_) => ErrorCode::InvalidMultipart,
            InputError::NoFileField { .. } | InputError::NoPicture => ErrorCode::NoImage,
            InputError::TooManyPictures { .. } => ErrorCode::TooManyImages,
        }
    }
}

/// The one check of how many pictures a request holds, whatever its form
/// (`/predict`'s bodies, the v2 BYTES and FP32 inputs): at least one, and
/// no more than the batch limit.
pub(crate) fn check_count(count: usize, limit: usize) -> Result<(), InputError> {
    match count {
        0 => Err(InputError::NoPicture),
        n if n > limit => Err(InputError::TooManyPictures { count: n, limit }),
        _ => Ok(()),
    }
}

/// A request's pictures: their bytes, or where one is in S3.
#[derive(Debug)]
pub enum Pictures {
    /// Encoded pictures, in request order.
    Bytes(Vec<Bytes>),
    /// `{"s3": "s3://bucket/key"}`, as given (checked by its reader).
    Stored(String),
    /// `{"upload": "<id>"}`, as given (checked by its reader).
    Uploaded(String),
}

/// Reads the body and returns the encoded pictures, in request order.
pub async fn read_images(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
    other: OtherTypes,
) -> Result<Pictures, InputError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_default();
    let mime: Option<mime::Mime> = content_type.parse().ok();
    let kind = match &mime {
        Some(m) if m.type_() == mime::IMAGE => Kind::Raw,
        Some(m) if m.type_() == mime::APPLICATION && m.subtype() == mime::OCTET_STREAM => Kind::Raw,
        Some(m) if m.type_() == mime::MULTIPART && m.subtype() == mime::FORM_DATA => {
            Kind::Multipart
        }
        Some(m) if m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON) => Kind::Json,
        _ if other == OtherTypes::AsJson => Kind::Json,
        _ => Kind::Unsupported,
    };

    // The size limit comes first, whatever the Content-Type: an over-limit
    // body is a 413 even when it would also be a 415.
    let bytes = read_body(headers, body, limits.max_body_bytes).await?;
    if kind == Kind::Unsupported {
        return Err(InputError::UnsupportedMediaType(
            if content_type.is_empty() {
                "no Content-Type".to_string()
            } else {
                format!("Content-Type {content_type:?}")
            },
        ));
    }
    if bytes.is_empty() {
        return Err(InputError::Empty("a picture"));
    }

    let images = match kind {
        Kind::Raw => vec![bytes],
        Kind::Multipart => multipart(&content_type, bytes).await?,
        Kind::Json => match json(&bytes)? {
            Pictures::Bytes(images) => images,
            stored => return Ok(stored),
        },
        Kind::Unsupported => unreachable!("refused above"),
    };
    check_count(images.len(), limits.max_batch)?;
    Ok(Pictures::Bytes(images))
}

/// After an early 413, what is left of the body is read and thrown away in
/// the background, up to these bounds, before the connection closes (as
/// nginx's lingering close): clients that write their whole body before
/// reading (Python's urllib) then read the answer instead of a broken pipe.
/// The body is never kept: only counted.
pub(crate) const LINGER_BYTES: usize = 64 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards `rest` within [`LINGER_BYTES`] and [`LINGER_TIME`];
/// whether it ended. Never kept: only counted.
pub(crate) async fn drain(mut rest: axum::body::BodyDataStream) -> bool {
    use futures_util::StreamExt;
    let mut read = 0usize;
    let all = async {
        while let Some(chunk) = rest.next().await {
            match chunk {
                Ok(chunk) => read += chunk.len(),
                Err(_) => return false,
            }
            if read > LINGER_BYTES {
                return false;
            }
        }
        true
    };
    let ended = tokio::time::timeout(LINGER_TIME, all)
        .await
        .unwrap_or(false);
    tracing::debug!(bytes = read, ended, "drained the rest of a body");
    ended
}

/// [`drain`] in the background (after an early 413).
fn linger(rest: axum::body::BodyDataStream) {
    tokio::spawn(drain(rest));
}

/// The whole body, within `limit` bytes: refused with 413 from its declared
/// `Content-Length` before reading, or as soon as a streamed body passes the
/// limit (the rest is then drained in the background, never stored).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, InputError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > limit as u64 {
            linger(body.into_data_stream());
            return Err(InputError::TooLarge(limit));
        }
    }
    read_limited(body, limit).await
}

/// The whole body, refused with 413 as soon as it grows past `limit` (the
/// rest is then drained in the background, never stored).
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, InputError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| InputError::Unreadable(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            linger(stream);
            return Err(InputError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    Multipart,
    Json,
    /// Refused, once the body is known to be within the limit.
    Unsupported,
}

/// How many field names a refusal of a form without a file repeats back.
const NAMED_FIELDS: usize = 8;

/// Every file field (a field with a file name, or named image/images/file/files).
async fn multipart(content_type: &str, body: Bytes) -> Result<Vec<Bytes>, InputError> {
    let bad = InputError::Multipart;
    let boundary = multer::parse_boundary(content_type).map_err(|e| bad(format!("{e}")))?;
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut images = Vec::new();
    let (mut fields, mut count) = (Vec::new(), 0);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("malformed multipart body: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some()
            || matches!(name.as_str(), "image" | "images" | "file" | "files");
        count += 1;
        if fields.len() < NAMED_FIELDS {
            fields.push(name);
        }
        let data = field
            .bytes()
            .await
            .map_err(|e| bad(format!("malformed multipart body: {e}")))?;
        if is_file {
            images.push(data);
        }
    }
    if images.is_empty() {
        return Err(InputError::NoFileField {
            first: fields,
            count,
        });
    }
    Ok(images)
}

/// The pictures of a JSON body, read by its wire type (which is also its schema).
fn json(body: &[u8]) -> Result<Pictures, InputError> {
    serde_json::from_slice::<JsonPictures>(body)
        .map_err(|e| InputError::Json(format!("the body is not a picture request: {e}")))?
        .decode()
}

/// Why a picture's base64 could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Base64Error {
    #[error("a data: URL must be base64 (data:<type>;base64,<data>)")]
    NotBase64DataUrl,
    #[error("empty base64 string")]
    Empty,
    #[error("invalid base64: {0}")]
    Invalid(#[from] base64::DecodeError),
}

/// Decodes base64, with or without padding, tolerating line breaks and a `data:` URL prefix.
pub(crate) fn decode_base64(s: &str) -> Result<Bytes, Base64Error> {
    let s = s.trim();
    let payload = match s.strip_prefix("data:") {
        Some(rest) => match rest.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => data,
            _ => return Err(Base64Error::NotBase64DataUrl),
        },
        None => s,
    };
    let clean: Vec<u8> = payload
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if clean.is_empty() {
        return Err(Base64Error::Empty);
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let url_safe = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(&clean)
        .or_else(|_| url_safe.decode(&clean))
        .map(Bytes::from)
        .map_err(Base64Error::Invalid)
}

// The wire type's decoding lives with the readers: it yields their error,
// and the wire types stay below them.
impl JsonPictures {
    /// The pictures' bytes, in order; the first malformed one is named.
    pub(crate) fn decode(self) -> Result<Pictures, InputError> {
        let pictures = match self {
            JsonPictures::One { image } => vec![image],
            JsonPictures::Many { images } => images,
            JsonPictures::Stored { s3 } => return Ok(Pictures::Stored(s3)),
            JsonPictures::Uploaded { upload } => return Ok(Pictures::Uploaded(upload)),
        };
        pictures
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                decode_base64(&p.0).map_err(|source| InputError::Base64 { index, source })
            })
            .collect::<Result<_, _>>()
            .map(Pictures::Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_forms() {
        assert_eq!(&decode_base64("aGk=").unwrap()[..], b"hi");
        assert_eq!(&decode_base64("aGk").unwrap()[..], b"hi");
        assert_eq!(
            &decode_base64("data:image/png;base64,aGk=").unwrap()[..],
            b"hi"
        );
        assert_eq!(&decode_base64("aG\nk=").unwrap()[..], b"hi");
        assert!(decode_base64("not base64!!").is_err());
        assert!(decode_base64("data:image/png,aGk=").is_err());
        assert!(decode_base64("").is_err());
    }

    #[test]
    fn json_shapes() {
        let count = |body: &[u8]| match json(body).unwrap() {
            Pictures::Bytes(p) => p.len(),
            other => panic!("not bytes: {other:?}"),
        };
        assert_eq!(count(br#"{"image":"aGk="}"#), 1);
        assert_eq!(count(br#"{"images":["aGk=","aGk="]}"#), 2);
        assert!(matches!(
            json(br#"{"s3":"s3://b/k.jpg"}"#).unwrap(),
            Pictures::Stored(s) if s == "s3://b/k.jpg"
        ));
        assert!(matches!(
            json(br#"{"upload":"0123456789abcdef0123456789abcdef.png"}"#).unwrap(),
            Pictures::Uploaded(id) if id.ends_with(".png")
        ));
        for bad in [
            &br#"[1]"#[..],
            br#"{"image":1}"#,
            br#"{"images":"aGk="}"#,
            br#"{"img":"x"}"#,
            b"{",
        ] {
            assert_eq!(
                ErrorCode::from(&json(bad).unwrap_err()),
                ErrorCode::InvalidJson,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &br#"{"image":"aGk=","images":["aGk="]}"#[..],
            br#"{"image":null}"#,
            br#"{"images":["aGk=",7]}"#,
            br#"{}"#,
            br#"{"image":"aGk=","s3":"s3://b/k"}"#,
            br#"{"upload":"0123","s3":"s3://b/k"}"#,
        ] {
            assert_eq!(
                ErrorCode::from(&json(bad).unwrap_err()),
                ErrorCode::InvalidJson,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // an empty list parses: it is the count check's to refuse
        assert_eq!(count(br#"{"images":[]}"#), 0);
        // extra fields are ignored, as they always were
        assert_eq!(count(br#"{"image":"aGk=","note":1}"#), 1);
        let e = json(br#"{"images":["aGk=","%%%"]}"#).unwrap_err();
        assert_eq!(ErrorCode::from(&e), ErrorCode::InvalidBase64);
        assert!(e.to_string().starts_with("image 2: "), "{e}");
    }

    #[test]
    fn one_picture_count_check() {
        assert!(matches!(check_count(0, 2), Err(InputError::NoPicture)));
        assert!(check_count(1, 2).is_ok() && check_count(2, 2).is_ok());
        assert!(matches!(
            check_count(3, 2),
            Err(InputError::TooManyPictures { count: 3, limit: 2 })
        ));
    }
}
