//! S3 Batch Operations ("Invoke AWS Lambda function"): the objects of a
//! job's tasks, in invocation schema 1.0 (`s3BucketArn`) or 2.0 (`s3Bucket`,
//! with the job's `userArguments`), and a result per task: `Succeeded`
//! with the label as its result string (it lands in the job's completion
//! report), `TemporaryFailure` (Batch Operations tries it again) or
//! `PermanentFailure` with the reason.

use aws_lambda_events::event::s3::batch_job::{
    S3BatchJobEvent, S3BatchJobResponse, S3BatchJobResult, S3BatchJobTask,
};

use super::notifications::Wanted;
use crate::objects::location::{bucket_of_arn, decode_event_key};
use crate::objects::FailureCode;
use crate::objects::{Failure, ObjectRef, Outcome};

/// How a task ended, as Batch Operations spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultCode {
    Succeeded,
    TemporaryFailure,
    PermanentFailure,
}

impl ResultCode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ResultCode::Succeeded => "Succeeded",
            ResultCode::TemporaryFailure => "TemporaryFailure",
            ResultCode::PermanentFailure => "PermanentFailure",
        }
    }

    pub(crate) fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Classified { .. } | Outcome::Ignored { .. } => ResultCode::Succeeded,
            Outcome::Failed { failure, .. } if failure.is_transient() => {
                ResultCode::TemporaryFailure
            }
            Outcome::Failed { .. } => ResultCode::PermanentFailure,
        }
    }
}

/// The object a task names (its key URL-encoded, as in both schemas).
pub(crate) fn task_object(task: &S3BatchJobTask) -> Wanted {
    let bucket = task
        .s3_bucket_arn
        .as_deref()
        .and_then(bucket_of_arn)
        .map(str::to_string)
        .or_else(|| {
            task.other
                .get("s3Bucket")
                .and_then(|b| b.as_str())
                .map(str::to_string)
        });
    let (Some(bucket), Some(raw)) = (bucket, task.s3_key.as_deref()) else {
        return Wanted::Bad(Failure::permanent(
            FailureCode::InvalidEvent,
            "the task names no bucket (s3BucketArn or s3Bucket) or no s3Key",
        ));
    };
    match decode_event_key(raw) {
        Ok(key) => {
            Wanted::Object(ObjectRef::new(bucket, key).with_version(task.s3_version_id.clone()))
        }
        Err(e) => Wanted::Bad(Failure::permanent(FailureCode::InvalidKey, e.to_string())),
    }
}

/// Result strings stay short: they fill a CSV report.
const MAX_RESULT_CHARS: usize = 512;

/// One task's result.
pub(crate) fn task_result(
    task_id: Option<String>,
    code: ResultCode,
    said: &str,
) -> S3BatchJobResult {
    let mut r = S3BatchJobResult::default();
    r.task_id = task_id;
    r.result_code = Some(code.as_str().into());
    r.result_string = Some(said.chars().take(MAX_RESULT_CHARS).collect());
    r
}

/// The answer to a job's invoke: a result for every task, in the schema
/// version it came in; a task the function leaves out counts as failed for good.
pub(crate) fn response(
    event: &S3BatchJobEvent,
    results: Vec<S3BatchJobResult>,
) -> S3BatchJobResponse {
    let mut r = S3BatchJobResponse::default();
    r.invocation_schema_version = Some(
        event
            .invocation_schema_version
            .clone()
            .unwrap_or_else(|| "1.0".into()),
    );
    r.treat_missing_keys_as = Some(ResultCode::PermanentFailure.as_str().into());
    r.invocation_id = event.invocation_id.clone();
    r.results = results;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(v: serde_json::Value) -> S3BatchJobTask {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn both_schemas_name_their_object() {
        let v1 = task(
            json!({"taskId": "t", "s3Key": "a+b.jpg", "s3VersionId": null,
                              "s3BucketArn": "arn:aws:s3:::photos"}),
        );
        assert_eq!(
            task_object(&v1),
            Wanted::Object(ObjectRef::new("photos", "a b.jpg"))
        );
        let v2 = task(
            json!({"taskId": "t", "s3Key": "k%2B.jpg", "s3VersionId": "v1",
                              "s3Bucket": "photos"}),
        );
        assert_eq!(
            task_object(&v2),
            Wanted::Object(ObjectRef::new("photos", "k+.jpg").with_version(Some("v1".into())))
        );
        assert!(matches!(
            task_object(&task(json!({"taskId": "t"}))),
            Wanted::Bad(_)
        ));
    }

    #[test]
    fn the_response_echoes_the_schema_and_fails_missing_tasks_for_good() {
        let event: S3BatchJobEvent = serde_json::from_value(json!({
            "invocationSchemaVersion": "2.0", "invocationId": "inv",
            "job": {"id": "j", "userArguments": {"k": "v"}}, "tasks": []
        }))
        .unwrap();
        let r = serde_json::to_value(response(
            &event,
            vec![task_result(
                Some("t1".into()),
                ResultCode::Succeeded,
                "dog 0.9",
            )],
        ))
        .unwrap();
        assert_eq!(
            r,
            json!({"invocationSchemaVersion": "2.0", "treatMissingKeysAs": "PermanentFailure",
                   "invocationId": "inv",
                   "results": [{"taskId": "t1", "resultCode": "Succeeded", "resultString": "dog 0.9"}]})
        );
    }
}
