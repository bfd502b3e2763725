//! S3 event notifications (direct, or wrapped in SQS messages) and
//! EventBridge "Object Created": the objects they name, and the answers
//! their sources expect. S3 URL-encodes keys in both forms of event (a
//! space as `+`); they are decoded here.
//!
//! - Direct S3 and EventBridge invokes are asynchronous: Lambda retries a
//!   failed invoke (twice by default, then its on-failure destination), so
//!   the invoke fails only when an object failed for a reason that may pass.
//!   The objects already done are answered from their records on the retry.
//! - SQS: each message whose object failed transiently is named in
//!   `batchItemFailures` and comes back; the others are deleted. A
//!   permanent failure is written into the object's record, never retried.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use super::kind::ObjectCreatedDetail;
use crate::objects::location::decode_event_key;
use crate::objects::FailureCode;
use crate::objects::{Failure, ObjectRef};

/// What one notification record asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Wanted {
    /// An object to classify.
    Object(ObjectRef),
    /// A record that names no object to classify (a removal, S3's test
    /// event): nothing to do, and not a failure.
    Nothing(String),
    /// A record that cannot be acted on (a key that does not decode).
    Bad(Failure),
}

/// The objects an S3 notification names, one per record.
pub(crate) fn s3_objects(event: &S3Event) -> Vec<Wanted> {
    event.records.iter().map(s3_object).collect()
}

fn s3_object(record: &S3EventRecord) -> Wanted {
    let name = record.event_name.as_deref().unwrap_or("");
    if !name.starts_with("ObjectCreated:") {
        return Wanted::Nothing(format!("a {name:?} event names no new object"));
    }
    let (Some(bucket), Some(raw)) = (
        record.s3.bucket.name.as_deref(),
        record.s3.object.key.as_deref(),
    ) else {
        return Wanted::Bad(Failure::permanent(
            FailureCode::InvalidEvent,
            "the record names no bucket or key",
        ));
    };
    match decode_event_key(raw) {
        Ok(key) => Wanted::Object(
            ObjectRef::new(bucket, key)
                .with_version(record.s3.object.version_id.clone())
                .with_etag(record.s3.object.e_tag.clone()),
        ),
        Err(e) => Wanted::Bad(Failure::permanent(FailureCode::InvalidKey, e.to_string())),
    }
}

/// The object an EventBridge "Object Created" event names.
pub(crate) fn eventbridge_object(event: &EventBridgeEvent<ObjectCreatedDetail>) -> Wanted {
    let d = &event.detail;
    match decode_event_key(&d.object.key) {
        Ok(key) => Wanted::Object(
            ObjectRef::new(&d.bucket.name, key)
                .with_version(d.object.version_id.clone())
                .with_etag(d.object.etag.clone()),
        ),
        Err(e) => Wanted::Bad(Failure::permanent(FailureCode::InvalidKey, e.to_string())),
    }
}

/// What one SQS message asks for: the S3 notification in its body (S3's
/// `s3:TestEvent`, sent when the notification is set up, asks for nothing).
pub(crate) fn sqs_objects(body: Option<&str>) -> Vec<Wanted> {
    let Some(body) = body else {
        return vec![Wanted::Bad(Failure::permanent(
            FailureCode::InvalidEvent,
            "the SQS message has no body",
        ))];
    };
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return vec![Wanted::Bad(Failure::permanent(
                FailureCode::InvalidEvent,
                format!("the SQS message body is not JSON: {e}"),
            ))]
        }
    };
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return vec![Wanted::Nothing("S3's test event".into())];
    }
    match serde_json::from_value::<S3Event>(value) {
        Ok(event) if !event.records.is_empty() => s3_objects(&event),
        Ok(_) => vec![Wanted::Nothing("an S3 notification with no records".into())],
        Err(e) => vec![Wanted::Bad(Failure::permanent(
            FailureCode::InvalidEvent,
            format!("the SQS message body is not an S3 notification: {e}"),
        ))],
    }
}

/// The partial batch response: the messages to deliver again.
pub(crate) fn sqs_response(retry: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = retry
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

/// The message ids of `event`, in order (a missing id cannot be retried by
/// name: it is reported as the empty string, which makes Lambda retry the
/// whole batch, the safe side).
pub(crate) fn message_ids(event: &SqsEvent) -> Vec<String> {
    event
        .records
        .iter()
        .map(|m| m.message_id.clone().unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The SAM CLI's S3 put event (`events/s3-put.json`) with this name and key.
    fn s3_value(name: &str, key: &str) -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/s3-put.json")).unwrap();
        let r = &mut v["Records"][0];
        r["eventName"] = json!(name);
        r["s3"]["bucket"]["name"] = json!("b");
        r["s3"]["object"]["key"] = json!(key);
        r["s3"]["object"]["eTag"] = json!("e");
        r["s3"]["object"]["versionId"] = json!("v");
        v
    }

    fn s3_event(name: &str, key: &str) -> S3Event {
        serde_json::from_value(s3_value(name, key)).unwrap()
    }

    #[test]
    fn created_objects_are_wanted_with_their_keys_decoded() {
        assert_eq!(
            s3_objects(&s3_event("ObjectCreated:Put", "a+b/%C3%A9.jpg")),
            vec![Wanted::Object(
                ObjectRef::new("b", "a b/é.jpg")
                    .with_etag(Some("e".into()))
                    .with_version(Some("v".into()))
            )]
        );
        assert!(matches!(
            s3_objects(&s3_event("ObjectRemoved:Delete", "k"))[0],
            Wanted::Nothing(_)
        ));
        assert!(matches!(
            &s3_objects(&s3_event("ObjectCreated:Put", "%FF"))[0],
            Wanted::Bad(f) if f.code == FailureCode::InvalidKey
        ));
    }

    #[test]
    fn sqs_bodies_carry_notifications_or_say_why_not() {
        let body = s3_value("ObjectCreated:Post", "k.png").to_string();
        assert_eq!(
            sqs_objects(Some(&body)),
            vec![Wanted::Object(
                ObjectRef::new("b", "k.png")
                    .with_etag(Some("e".into()))
                    .with_version(Some("v".into()))
            )]
        );
        assert!(matches!(
            sqs_objects(Some(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#))[0],
            Wanted::Nothing(_)
        ));
        assert!(matches!(&sqs_objects(Some("nope"))[0], Wanted::Bad(f) if !f.is_transient()));
        assert!(matches!(&sqs_objects(None)[0], Wanted::Bad(_)));
    }

    #[test]
    fn the_partial_batch_response_names_the_messages_to_retry() {
        let r = serde_json::to_value(sqs_response(["m2".to_string()])).unwrap();
        assert_eq!(r, json!({"batchItemFailures": [{"itemIdentifier": "m2"}]}));
        let none = serde_json::to_value(sqs_response(Vec::new())).unwrap();
        assert_eq!(none, json!({"batchItemFailures": []}));
    }
}
