//! The one error shape every route answers with:
//! `{"error": {"code": "...", "message": "..."}}` and a fitting status: an
//! [`ApiError`] as an HTTP answer, and the request readers' errors turned
//! into one. The documented table of codes is checked against [`ErrorCode`]
//! by the test at the end of this file.

use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::{ApiError, ErrorCode};
use crate::http::input::InputError;
use crate::http::types::{ErrorBody, ErrorDetail, OipErrorBody};

/// axum's refusal of a small JSON body (`POST /uploads`).
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as R;
        let code = match &e {
            R::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            R::BytesRejection(_) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                ErrorCode::PayloadTooLarge
            }
            R::BytesRejection(_) => ErrorCode::InvalidBody,
            _ => ErrorCode::InvalidJson,
        };
        Self::new(code, e.body_text())
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        Self::new(ErrorCode::from(&e), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        };
        let mut res = (self.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res.extensions_mut().insert(self);
        res
    }
}

/// An error answer in the Open Inference Protocol's shape, `{"error":
/// "<message>"}` (what tritonclient and the kserve SDK read), keeping its
/// status and headers (`Retry-After`, `WWW-Authenticate`, CORS). Answers
/// that are not errors pass unchanged.
pub(crate) fn in_oip_shape(res: Response) -> Response {
    let Some(error) = res.extensions().get::<ApiError>().cloned() else {
        return res;
    };
    let (mut parts, _) = res.into_parts();
    let body = serde_json::to_vec(&OipErrorBody {
        error: error.message,
    })
    .unwrap_or_default();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/api.md's "Errors and limits" table, as (codes, statuses, Retry-After) rows.
    fn documented_table() -> Vec<(Vec<String>, Vec<u16>, Option<u32>)> {
        let api = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"));
        let section = api
            .split("\n## Errors and limits\n")
            .nth(1)
            .expect("docs/api.md has a section \"Errors and limits\"");
        let backticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        section
            .lines()
            .skip_while(|l| !l.starts_with("| status | code |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let (status, codes) = (cells[1], cells[2]);
                let statuses = status
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|n| n.len() == 3)
                    .map(|n| n.parse().unwrap())
                    .collect();
                let retry_after = backticked(status).iter().find_map(|h| {
                    h.strip_prefix("Retry-After: ")
                        .map(|s| s.parse().expect("a number of seconds"))
                });
                (backticked(codes), statuses, retry_after)
            })
            .collect()
    }

    #[test]
    fn the_api_doc_lists_every_code_with_its_status_and_no_other() {
        let table = documented_table();
        assert!(table.len() > 10, "the table was not found: {table:?}");
        let mut listed = Vec::new();
        for (codes, statuses, retry_after) in &table {
            assert!(
                statuses.len() == 1 || statuses.len() == codes.len(),
                "row {codes:?}: give one status, or one per code ({statuses:?})"
            );
            for (i, name) in codes.iter().enumerate() {
                let code = ErrorCode::ALL
                    .iter()
                    .find(|c| c.as_str() == name)
                    .unwrap_or_else(|| panic!("docs/api.md lists `{name}`, which ErrorCode lacks"));
                let status = statuses[if statuses.len() == 1 { 0 } else { i }];
                assert_eq!(code.status().as_u16(), status, "`{name}`'s status");
                assert_eq!(code.retry_after(), *retry_after, "`{name}`'s Retry-After");
                listed.push(*code);
            }
        }
        for code in ErrorCode::ALL {
            assert!(
                listed.contains(code),
                "`{code}` is not in docs/api.md's table (section Errors and limits)"
            );
        }
    }
}
