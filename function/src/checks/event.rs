//! How the hook asks a function version about one picture: the event a
//! Function URL would send for `POST /predict` with the picture as its body
//! (payload format 2.0), through Lambda's Invoke API, so the version answers
//! exactly as it will answer its callers; and the answer read back out of
//! the invoke's payload (the HTTP response as Lambda carries it).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Value};

use super::compare::Answer;

/// The Function URL event of `POST /predict` with `picture` as a raw body,
/// carrying the API key when the classifier asks for one.
pub(crate) fn function_url_event(picture: &[u8], api_key: Option<&str>, request_id: &str) -> Value {
    const AGENT: &str = "catdog-pretraffic";
    const DOMAIN: &str = "pretraffic.catdog.invalid";
    let mut headers = json!({
        "content-type": "application/octet-stream",
        "host": DOMAIN,
        "user-agent": AGENT,
    });
    if let Some(key) = api_key {
        headers["x-api-key"] = Value::String(key.to_string());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/predict",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "pretraffic",
            "domainName": DOMAIN,
            "domainPrefix": "pretraffic",
            "http": {
                "method": "POST",
                "path": "/predict",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": AGENT,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": now_ms,
        },
        "body": base64::engine::general_purpose::STANDARD.encode(picture),
        "isBase64Encoded": true,
    })
}

/// The answer in an invoke's payload: a `200` HTTP response whose body is
/// `/predict`'s answer. Anything else is an error saying what came instead.
pub(crate) fn answer_of(payload: &[u8]) -> Result<Answer, String> {
    let response: Value = serde_json::from_slice(payload).map_err(|e| {
        format!(
            "the invoke answered no JSON ({e}): {}",
            excerpt(&String::from_utf8_lossy(payload))
        )
    })?;
    let status = response["statusCode"].as_u64().ok_or_else(|| {
        format!(
            "the invoke answered no HTTP response: {}",
            excerpt(&response.to_string())
        )
    })?;
    let body = match response["body"].as_str().unwrap_or("") {
        b if response["isBase64Encoded"] == true => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("HTTP {status} with a body that is not base64: {e}"))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        b => b.to_string(),
    };
    if status != 200 {
        return Err(format!("HTTP {status}: {}", excerpt(&body)));
    }
    let answer: Value = serde_json::from_str(&body).map_err(|e| {
        format!(
            "HTTP 200 with a body that is not JSON ({e}): {}",
            excerpt(&body)
        )
    })?;
    let label = answer["label"]
        .as_str()
        .ok_or_else(|| format!("an answer without a label: {}", excerpt(&body)))?;
    let scores: BTreeMap<String, f64> = answer["scores"]
        .as_object()
        .ok_or_else(|| format!("an answer without scores: {}", excerpt(&body)))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
        .collect();
    Ok(Answer {
        label: label.to_string(),
        scores,
        model_sha256: answer["model"]["sha256"].as_str().map(str::to_string),
    })
}

/// At most 300 characters of `text`, for a log line.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_is_a_function_url_post_to_predict_that_the_router_reads() {
        let event = function_url_event(b"\xff\xd8picture", Some("0123456789abcdef"), "r-1");
        match crate::events::kind::EventKind::identify(event.clone()) {
            Ok(crate::events::kind::EventKind::Http(_)) => {}
            other => panic!("not taken as HTTP: {other:?}"),
        }
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["rawPath"], "/predict");
        assert_eq!(event["headers"]["x-api-key"], "0123456789abcdef");
        let body = base64::engine::general_purpose::STANDARD
            .decode(event["body"].as_str().unwrap())
            .unwrap();
        assert_eq!(body, b"\xff\xd8picture");
        assert!(function_url_event(b"x", None, "r-2")["headers"]
            .get("x-api-key")
            .is_none());
    }

    #[test]
    fn only_a_200_with_an_answer_is_an_answer() {
        let body = json!({"label": "cat", "confidence": 0.9, "scores": {"cat": 0.9, "dog": 0.1},
                          "model": {"sha256": "ab"}});
        let ok = json!({"statusCode": 200, "body": body.to_string(), "isBase64Encoded": false});
        let answer = answer_of(ok.to_string().as_bytes()).unwrap();
        assert_eq!(answer.label, "cat");
        assert_eq!(answer.scores["dog"], 0.1);
        assert_eq!(answer.model_sha256.as_deref(), Some("ab"));

        let refused = json!({"statusCode": 401, "body": "{\"error\":{\"code\":\"unauthorized\"}}"});
        let err = answer_of(refused.to_string().as_bytes()).unwrap_err();
        assert!(
            err.starts_with("HTTP 401: ") && err.contains("unauthorized"),
            "{err}"
        );
        let crashed = json!({"errorType": "Runtime.ExitError", "errorMessage": "exit status 1"});
        assert!(answer_of(crashed.to_string().as_bytes())
            .unwrap_err()
            .contains("Runtime.ExitError"));
        assert!(answer_of(b"<html>").is_err());
    }
}
