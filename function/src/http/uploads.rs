//! `POST /uploads` and `GET /uploads/{id}`: pictures past the body limit
//! (Lambda's 6 MB invoke limit) go straight to S3 by a presigned PUT, and
//! their answer is read back here once classified.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use std::sync::Arc;

use crate::error::{ApiError, ErrorCode};
use crate::http::path::PathParams;
use crate::http::state::AppState;
use crate::http::types::{ErrorBody, KeyRequired, S3Refusal, UploadResult};
use crate::objects::{uploads_off, StoredPictures, UploadRequest, UploadTicket, UPLOAD_TYPES};

/// Whether `GET /uploads/{id}` found the record already written (by the
/// picture's S3 event) or wrote it now: `existing` or `written`.
pub(crate) const RECORD_HEADER: &str = "catdog-record";

fn stored_pictures(state: &AppState) -> Result<&Arc<dyn StoredPictures>, ApiError> {
    state.stored_pictures.as_ref().ok_or_else(uploads_off)
}

/// `POST /uploads`: a presigned PUT URL into the uploads bucket, and the key.
#[utoipa::path(post, path = "/uploads", tag = "classify",
    request_body(content = UploadRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Where to PUT the picture (within `expires_in_s`), and where its answer will be", body = UploadTicket),
        (status = 400, description = "Not JSON of that shape (`invalid_json`)", body = ErrorBody),
        (status = 404, description = "No uploads bucket on this server (`uploads_off`)", body = ErrorBody),
        (status = 413, description = "`bytes` over CATDOG_MAX_OBJECT_BYTES (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "A body that is not JSON, or a `content_type` that is not one of the picture types catdog decodes", body = ErrorBody),
        (status = 503, description = "S3 out of reach (`s3_unavailable`)", body = ErrorBody),
        KeyRequired, S3Refusal,
    ))]
pub(crate) async fn create_upload(
    State(state): State<AppState>,
    request: Result<Json<UploadRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let stored = stored_pictures(&state)?;
    let Json(request) = request.map_err(ApiError::from)?;
    // The request is checked field by field before its size is weighed.
    // As the schema's pattern says (the type is signed into the URL and
    // sent back as one header value; S3 serves the object with it).
    let t = &request.content_type;
    if !UPLOAD_TYPES.iter().any(|(known, _)| known == t) {
        let known: Vec<&str> = UPLOAD_TYPES.iter().map(|(t, _)| *t).collect();
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "content_type {t:?} is not a picture type catdog decodes: give one of {}",
                known.join(", ")
            ),
        ));
    }
    if request.bytes == 0 {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            "`bytes` is 0: nothing to upload",
        ));
    }
    if request.bytes as u64 > state.limits.max_object_bytes as u64 {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{} bytes is over the limit of {} for pictures in S3 (CATDOG_MAX_OBJECT_BYTES)",
                request.bytes, state.limits.max_object_bytes
            ),
        ));
    }
    let ticket = stored.upload(request).await?;
    Ok((StatusCode::CREATED, Json(ticket)).into_response())
}

/// `GET /uploads/{id}`: the uploaded picture's answer.
#[utoipa::path(get, path = "/uploads/{id}", tag = "classify",
    params(("id" = String, Path, description = "The `id` of `POST /uploads`' answer")),
    responses(
        (status = 200, description = "Its record; header `catdog-record`: `existing` (written by its S3 event) or `written` (now)", body = UploadResult),
        (status = 400, description = "Not an upload id (`invalid_upload_id`, or `invalid_path`: not UTF-8), or the picture was refused (`invalid_image`, …)", body = ErrorBody),
        (status = 404, description = "No uploads bucket (`uploads_off`), or nothing uploaded under that id (`no_such_key`)", body = ErrorBody),
        (status = 413, description = "Over CATDOG_MAX_OBJECT_BYTES (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "A picture format that is not supported", body = ErrorBody),
        (status = 422, description = "Over the pixel limit (`image_too_large`)", body = ErrorBody),
        (status = 503, description = "The model is not ready, or S3 is out of reach", body = ErrorBody),
        KeyRequired, S3Refusal,
    ))]
pub(crate) async fn upload_result(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let stored = stored_pictures(&state)?.clone();
    check_upload_id(&id)?;
    let (record, existing) = stored
        .upload_result(state.model_slot(), state.limits, id)
        .await?;
    let mut res = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        record,
    )
        .into_response();
    res.headers_mut().insert(
        RECORD_HEADER,
        HeaderValue::from_static(if existing { "existing" } else { "written" }),
    );
    Ok(res)
}

/// `invalid_upload_id` unless `id` is one `POST /uploads` makes.
pub(crate) fn check_upload_id(id: &str) -> Result<(), ApiError> {
    if is_upload_id(id) {
        return Ok(());
    }
    let message = format!(
        "{id:?} is not an upload id (32 hex digits and an extension, as POST /uploads gives)"
    );
    Err(ApiError::new(ErrorCode::InvalidUploadId, message))
}

/// An id as `POST /uploads` makes them: 32 lowercase hex digits, and a
/// picture extension when the type was given.
pub(crate) fn is_upload_id(id: &str) -> bool {
    let (hex, ext) = id.split_once('.').unwrap_or((id, ""));
    hex.len() == 32
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && ["", "jpg", "png", "webp", "gif", "bmp"].contains(&ext)
}

#[cfg(test)]
mod tests {
    #[test]
    fn upload_ids_are_what_post_uploads_makes() {
        let hex = "0123456789abcdef0123456789abcdef";
        assert!(super::is_upload_id(hex));
        assert!(super::is_upload_id(&format!("{hex}.png")));
        for bad in [
            &hex[1..],
            &hex.to_uppercase(),
            &format!("{hex}.exe"),
            "../../etc/passwd",
            "",
        ] {
            assert!(!super::is_upload_id(bad), "{bad}");
        }
    }
}
