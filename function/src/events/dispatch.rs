//! One invoke, from its event to its answer: HTTP through the one router
//! (as `lambda_http::run` would), S3-side events through the object
//! worker, several objects at once (bounded), each object failing alone.

use futures_util::StreamExt;
use lambda_http::{Adapter, LambdaEvent, Service};
use serde_json::{json, Value};

use super::batch::{self, ResultCode};
use super::kind::{EventKind, UnknownEvent};
use super::notifications::{self, Wanted};
use crate::objects::{ObjectWorker, Outcome};

/// Why an invoke fails (Lambda then reports it, and retries what it retries).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Unknown(#[from] UnknownEvent),
    /// An S3-side event reached a function with no S3 client (not on Lambda).
    #[error("this host does not classify S3 objects: {0}")]
    NoObjects(String),
    /// Some object failed for a reason that may pass: the asynchronous
    /// invoke fails so that Lambda tries it again.
    #[error("{failed} of {total} objects failed for a reason that may pass, so the event is to be retried (objects already done are answered from their records): {first}")]
    Retry {
        failed: usize,
        total: usize,
        first: String,
    },
}

/// Answers every event kind; cheap to clone (one per invoke).
#[derive(Clone)]
pub struct EventHandler {
    router: axum::Router,
    objects: Option<ObjectWorker>,
    /// Objects classified at once within one invoke.
    concurrency: usize,
}

impl EventHandler {
    pub fn new(router: axum::Router, objects: Option<ObjectWorker>, concurrency: usize) -> Self {
        Self {
            router,
            objects,
            concurrency: concurrency.max(1),
        }
    }

    /// The answer to one invoke.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, EventError> {
        let LambdaEvent { payload, context } = event;
        match EventKind::identify(payload)? {
            EventKind::Http(request) => {
                let mut adapter = Adapter::from(self.router.clone());
                let response = match adapter.call(LambdaEvent::new(*request, context)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok(serde_json::to_value(response).expect("an HTTP response serializes"))
            }
            EventKind::S3(event) => self.asynchronous(notifications::s3_objects(&event)).await,
            EventKind::EventBridge(event) => {
                self.asynchronous(vec![notifications::eventbridge_object(&event)])
                    .await
            }
            EventKind::Sqs(event) => {
                let ids = notifications::message_ids(&event);
                let wanted: Vec<(usize, Wanted)> = event
                    .records
                    .iter()
                    .enumerate()
                    .flat_map(|(i, m)| {
                        notifications::sqs_objects(m.body.as_deref())
                            .into_iter()
                            .map(move |w| (i, w))
                    })
                    .collect();
                let (which, wanted): (Vec<usize>, Vec<Wanted>) = wanted.into_iter().unzip();
                let outcomes = self.run_all(wanted).await?;
                let mut retry: Vec<String> = which
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| o.retryable())
                    .map(|(&i, _)| ids[i].clone())
                    .collect();
                retry.dedup();
                Ok(serde_json::to_value(notifications::sqs_response(retry)).expect("serializes"))
            }
            EventKind::Batch(event) => {
                let wanted = event.tasks.iter().map(batch::task_object).collect();
                let outcomes = self.run_all(wanted).await?;
                let results = event
                    .tasks
                    .iter()
                    .zip(&outcomes)
                    .map(|(task, o)| {
                        let code = o.result_code();
                        batch::task_result(task.task_id.clone(), code, &o.summary())
                    })
                    .collect();
                Ok(serde_json::to_value(batch::response(&event, results)).expect("serializes"))
            }
        }
    }

    /// A direct S3 or EventBridge invoke: fails (so Lambda retries it) only
    /// when some object failed for a reason that may pass.
    async fn asynchronous(&self, wanted: Vec<Wanted>) -> Result<Value, EventError> {
        let outcomes = self.run_all(wanted).await?;
        let retryable: Vec<&Done> = outcomes.iter().filter(|o| o.retryable()).collect();
        if let Some(first) = retryable.first() {
            return Err(EventError::Retry {
                failed: retryable.len(),
                total: outcomes.len(),
                first: first.summary(),
            });
        }
        Ok(json!({ "objects": outcomes.iter().map(Done::to_json).collect::<Vec<_>>() }))
    }

    /// Every wanted object, `concurrency` at a time, in order.
    async fn run_all(&self, wanted: Vec<Wanted>) -> Result<Vec<Done>, EventError> {
        let worker = self.objects.clone().ok_or_else(|| {
            EventError::NoObjects("S3 events need the Lambda bootstrap's S3 client".into())
        })?;
        Ok(futures_util::stream::iter(wanted)
            .map(|w| {
                let worker = worker.clone();
                async move {
                    match w {
                        Wanted::Object(object) => Done::Ran(Box::new(worker.run(object).await)),
                        Wanted::Nothing(why) => Done::Nothing(why),
                        Wanted::Bad(failure) => Done::Bad(failure),
                    }
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await)
    }
}

/// What became of one record of an event.
#[derive(Debug)]
enum Done {
    Ran(Box<Outcome>),
    Nothing(String),
    Bad(crate::objects::Failure),
}

impl Done {
    fn retryable(&self) -> bool {
        match self {
            Done::Ran(o) => o.retryable(),
            Done::Nothing(_) => false,
            Done::Bad(f) => f.is_transient(),
        }
    }

    fn summary(&self) -> String {
        match self {
            Done::Ran(o) => o.summary(),
            Done::Nothing(why) => format!("nothing to do: {why}"),
            Done::Bad(f) => f.to_string(),
        }
    }

    fn result_code(&self) -> ResultCode {
        match self {
            Done::Ran(o) => ResultCode::of(o),
            Done::Nothing(_) => ResultCode::Succeeded,
            Done::Bad(f) if f.is_transient() => ResultCode::TemporaryFailure,
            Done::Bad(_) => ResultCode::PermanentFailure,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Done::Ran(o) => match o.as_ref() {
                Outcome::Classified { record, reused } => json!({
                    "object": crate::objects::ObjectRef::new(&record.bucket, &record.key).to_string(),
                    "status": if *reused { "reused" } else { "classified" },
                    "label": record.label(),
                }),
                Outcome::Failed { object, failure } => json!({
                    "object": object.to_string(), "status": "failed", "error": failure,
                }),
                Outcome::Ignored { object, reason } => json!({
                    "object": object.to_string(), "status": "ignored", "reason": reason,
                }),
            },
            Done::Nothing(why) => json!({"status": "nothing", "reason": why}),
            Done::Bad(failure) => json!({"status": "failed", "error": failure}),
        }
    }
}
