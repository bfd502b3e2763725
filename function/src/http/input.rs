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

use crate::http::error::ApiError;
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

/// Reads the body and returns the encoded pictures, in request order.
pub async fn read_images(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
    other: OtherTypes,
) -> Result<Vec<Bytes>, ApiError> {
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
        let got = if content_type.is_empty() {
            "no Content-Type".to_string()
        } else {
            format!("Content-Type {content_type:?}")
        };
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{got} is not accepted: send the picture as image/* (or application/octet-stream), \
                 multipart/form-data, or application/json {{\"image\": \"<base64>\"}}"
            ),
        ));
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request body is empty: send a picture",
        ));
    }

    let images = match kind {
        Kind::Raw => vec![bytes],
        Kind::Multipart => multipart(&content_type, bytes).await?,
        Kind::Json => json(&bytes)?,
        Kind::Unsupported => unreachable!("refused above"),
    };
    if images.is_empty() {
        return Err(ApiError::bad_request(
            "no_image",
            "the request holds no picture",
        ));
    }
    if images.len() > limits.max_batch {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_images",
            format!(
                "{} pictures in one request; the limit is {}",
                images.len(),
                limits.max_batch
            ),
        ));
    }
    Ok(images)
}

/// After an early 413, what is left of the body is read and thrown away in
/// the background, up to these bounds, before the connection closes (as
/// nginx's lingering close): clients that write their whole body before
/// reading (Python's urllib) then read the answer instead of a broken pipe.
/// The body is never kept: only counted.
const LINGER_BYTES: usize = 64 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Drains `rest` in the background, bounded by [`LINGER_BYTES`] and [`LINGER_TIME`].
fn linger(mut rest: axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    tokio::spawn(async move {
        let mut read = 0usize;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            while let Some(Ok(chunk)) = rest.next().await {
                read += chunk.len();
                if read > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
        tracing::debug!(bytes = read, "drained the rest of an over-limit body");
    });
}

/// The whole body, within `limit` bytes: refused with 413 from its declared
/// `Content-Length` before reading, or as soon as a streamed body passes the
/// limit (the rest is then drained in the background, never stored).
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > limit as u64 {
            linger(body.into_data_stream());
            return Err(ApiError::too_large(limit));
        }
    }
    read_limited(body, limit).await
}

/// The whole body, refused with 413 as soon as it grows past `limit` (the
/// rest is then drained in the background, never stored).
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            linger(stream);
            return Err(ApiError::too_large(limit));
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

/// Every file field (a field with a file name, or named image/images/file/files).
async fn multipart(content_type: &str, body: Bytes) -> Result<Vec<Bytes>, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_multipart", m);
    let boundary = multer::parse_boundary(content_type).map_err(|e| bad(format!("{e}")))?;
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut images = Vec::new();
    let mut fields = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("malformed multipart body: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some()
            || matches!(name.as_str(), "image" | "images" | "file" | "files");
        fields.push(name);
        let data = field
            .bytes()
            .await
            .map_err(|e| bad(format!("malformed multipart body: {e}")))?;
        if is_file {
            images.push(data);
        }
    }
    if images.is_empty() {
        return Err(ApiError::bad_request(
            "no_image",
            format!("the multipart form has no file field (fields: {fields:?}); add the picture as a file"),
        ));
    }
    Ok(images)
}

fn json(body: &[u8]) -> Result<Vec<Bytes>, ApiError> {
    let shape = "expected {\"image\": \"<base64>\"} or {\"images\": [\"<base64>\", ...]}";
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let wrong = |what: &str| ApiError::bad_request("invalid_json", format!("{what}: {shape}"));
    let obj = value
        .as_object()
        .ok_or_else(|| wrong("the JSON body is not an object"))?;
    let items: Vec<&serde_json::Value> = match (obj.get("image"), obj.get("images")) {
        (Some(_), Some(_)) => return Err(wrong("give `image` or `images`, not both")),
        (Some(one), None) => vec![one],
        (None, Some(serde_json::Value::Array(many))) => many.iter().collect(),
        (None, Some(_)) => return Err(wrong("`images` must be an array")),
        (None, None) => return Err(wrong("no `image` field")),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let s = v
                .as_str()
                .ok_or_else(|| wrong(&format!("image {} is not a string", i + 1)))?;
            decode_base64(s).map_err(|m| {
                ApiError::bad_request("invalid_base64", format!("image {}: {m}", i + 1))
            })
        })
        .collect()
}

/// Decodes base64, with or without padding, tolerating line breaks and a `data:` URL prefix.
pub fn decode_base64(s: &str) -> Result<Bytes, String> {
    let s = s.trim();
    let payload = match s.strip_prefix("data:") {
        Some(rest) => match rest.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => data,
            _ => return Err("a data: URL must be base64 (data:<type>;base64,<data>)".into()),
        },
        None => s,
    };
    let clean: Vec<u8> = payload
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if clean.is_empty() {
        return Err("empty base64 string".into());
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
        .map_err(|e| format!("invalid base64: {e}"))
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
        assert_eq!(json(br#"{"image":"aGk="}"#).unwrap().len(), 1);
        assert_eq!(json(br#"{"images":["aGk=","aGk="]}"#).unwrap().len(), 2);
        for bad in [
            &br#"[1]"#[..],
            br#"{"image":1}"#,
            br#"{"images":"aGk="}"#,
            br#"{"img":"x"}"#,
            b"{",
        ] {
            assert_eq!(
                json(bad).unwrap_err().code,
                "invalid_json",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            json(br#"{"image":"%%%"}"#).unwrap_err().code,
            "invalid_base64"
        );
    }
}
