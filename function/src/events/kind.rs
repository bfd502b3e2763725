//! Which event an invoke carries. The S3-side shapes are recognised by
//! their markers first (`eventSource`, `source` + `detail-type`,
//! `invocationSchemaVersion` + `tasks`), because lambda_http's request
//! types take almost any object; HTTP events must then carry an HTTP
//! request's fields. Anything else is refused by name.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::s3::batch_job::S3BatchJobEvent;
use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::request::LambdaRequest;
use serde::Deserialize;
use serde_json::Value;

/// An invoke's event, parsed.
#[derive(Debug)]
pub(crate) enum EventKind {
    Http(Box<LambdaRequest>),
    S3(S3Event),
    EventBridge(Box<EventBridgeEvent<ObjectCreatedDetail>>),
    Sqs(SqsEvent),
    Batch(Box<S3BatchJobEvent>),
}

/// The `detail` of EventBridge's S3 "Object Created" event (aws_lambda_events
/// has the envelope, generic over its detail, but not this detail).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub(crate) struct ObjectCreatedDetail {
    pub(crate) bucket: DetailBucket,
    pub(crate) object: DetailObject,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub(crate) struct DetailBucket {
    pub(crate) name: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub(crate) struct DetailObject {
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) size: Option<u64>,
    #[serde(default)]
    pub(crate) etag: Option<String>,
    #[serde(default, rename = "version-id")]
    pub(crate) version_id: Option<String>,
}

/// An event catdog does not answer, named by what it held.
#[derive(Debug, thiserror::Error)]
#[error(
    "catdog answers HTTP (Function URL, API Gateway, ALB), S3 notifications, EventBridge \
     Object Created, SQS-wrapped S3 notifications and S3 Batch Operations; this event is {what}"
)]
pub(crate) struct UnknownEvent {
    pub(crate) what: String,
}

impl EventKind {
    /// Tells the event apart by its shape; a known shape with bad fields is
    /// refused with serde's reason.
    pub(crate) fn identify(event: Value) -> Result<Self, UnknownEvent> {
        let source = first_record_field(&event, "eventSource");
        let parse_err = |kind: &str, e: serde_json::Error| UnknownEvent {
            what: format!("an {kind} event that does not parse: {e}"),
        };
        match source.as_deref() {
            Some("aws:s3") => {
                return serde_json::from_value(event)
                    .map(EventKind::S3)
                    .map_err(|e| parse_err("S3 notification", e))
            }
            Some("aws:sqs") => {
                return serde_json::from_value(event)
                    .map(EventKind::Sqs)
                    .map_err(|e| parse_err("SQS", e))
            }
            _ => {}
        }
        if event.get("source").and_then(Value::as_str) == Some("aws.s3")
            && event.get("detail-type").is_some()
        {
            let detail_type = event["detail-type"].as_str().unwrap_or("").to_string();
            if detail_type != "Object Created" {
                return Err(UnknownEvent {
                    what: format!("an EventBridge S3 event of detail-type {detail_type:?} (only \"Object Created\" is classified)"),
                });
            }
            return serde_json::from_value(event)
                .map(|e| EventKind::EventBridge(Box::new(e)))
                .map_err(|e| parse_err("EventBridge", e));
        }
        if event.get("invocationSchemaVersion").is_some() && event.get("tasks").is_some() {
            return serde_json::from_value(event)
                .map(|e| EventKind::Batch(Box::new(e)))
                .map_err(|e| parse_err("S3 Batch Operations", e));
        }
        if looks_like_http(&event) {
            return serde_json::from_value::<LambdaRequest>(event)
                .map(|r| EventKind::Http(Box::new(r)))
                .map_err(|e| parse_err("HTTP", e));
        }
        Err(UnknownEvent {
            what: describe(&event, source.as_deref()),
        })
    }
}

fn first_record_field(event: &Value, field: &str) -> Option<String> {
    let records = event.get("Records")?.as_array()?;
    records.first()?.get(field)?.as_str().map(str::to_string)
}

/// API Gateway (REST, HTTP, WebSocket), Function URLs, ALB and VPC Lattice
/// all carry a request context or an HTTP method and path.
fn looks_like_http(event: &Value) -> bool {
    event.get("requestContext").is_some()
        || event.get("httpMethod").is_some()
        || (event.get("method").is_some() && event.get("path").is_some())
}

/// What an unknown event held, for its refusal: its top-level fields (never
/// their values, which may be private), or its JSON type.
fn describe(event: &Value, source: Option<&str>) -> String {
    match event {
        Value::Object(map) if map.is_empty() => "an empty object".into(),
        Value::Object(map) => {
            let mut keys: Vec<&str> = map.keys().map(String::as_str).take(12).collect();
            keys.sort_unstable();
            let from = source
                .map(|s| format!(" from eventSource {s:?}"))
                .unwrap_or_default();
            format!("an object{from} with fields {}", keys.join(", "))
        }
        Value::Array(_) => "a JSON array".into(),
        Value::String(_) => "a JSON string".into(),
        Value::Number(_) => "a JSON number".into(),
        Value::Bool(_) => "a JSON boolean".into(),
        Value::Null => "null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_events_are_refused_by_what_they_hold() {
        let e = EventKind::identify(json!({"hello": 1, "detail": 2})).unwrap_err();
        assert!(e.to_string().contains("fields detail, hello"), "{e}");
        let e =
            EventKind::identify(json!({"Records": [{"eventSource": "aws:dynamodb"}]})).unwrap_err();
        assert!(e.to_string().contains("aws:dynamodb"), "{e}");
        let e = EventKind::identify(json!([1])).unwrap_err();
        assert!(e.to_string().contains("a JSON array"), "{e}");
        let e = EventKind::identify(json!({
            "source": "aws.s3", "detail-type": "Object Deleted", "detail": {}
        }))
        .unwrap_err();
        assert!(e.to_string().contains("Object Deleted"), "{e}");
    }

    #[test]
    fn a_known_shape_with_bad_fields_says_which() {
        let e =
            EventKind::identify(json!({"invocationSchemaVersion": "1.0", "tasks": 3})).unwrap_err();
        assert!(
            e.to_string()
                .contains("S3 Batch Operations event that does not parse"),
            "{e}"
        );
    }
}
