//! One invoke, from its event to its answer: HTTP through the one router
//! (as `lambda_http::run` would), S3-side events through the object
//! worker, several objects at once (bounded), each object failing alone.

use futures_util::StreamExt;
use lambda_http::{Adapter, LambdaEvent, Service};
use serde_json::Value;

use super::batch::{self, ResultCode};
use super::kind::{EventKind, UnknownEvent};
use super::notifications::{self, Wanted};
use crate::http::deadline::lambda_stop;
use crate::objects::location::{redact_upload_ids, ObjectScope};
use crate::objects::FailureCode;
use crate::objects::{Failure, ObjectRef, ObjectWorker, Outcome};

use std::time::{Duration, Instant};

/// Why an invoke fails (Lambda then reports it, and retries what it retries).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EventError {
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

/// The router with its answers' bodies read into memory: lambda_http's
/// adapter keeps a reference to the response type across an await, which is
/// `Send` only for a `Sync` body (axum's is not), and invokes that run at
/// once (Managed Instances) need a `Send` handler. A Lambda answer is
/// buffered whole anyway.
#[derive(Clone)]
struct Buffered(axum::Router);

impl Service<lambda_http::Request> for Buffered {
    type Response = http::Response<lambda_http::Body>;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        Service::<lambda_http::Request>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, request: lambda_http::Request) -> Self::Future {
        let answer = self.0.call(request);
        Box::pin(async move {
            let answer = answer.await?;
            Ok(match buffer(answer).await {
                Ok(buffered) => buffered,
                // The router's bodies are in memory: reading one cannot fail.
                Err(e) => {
                    tracing::error!(error = %e, "reading an answer's body");
                    let failed = crate::error::ApiError::internal("the answer could not be read");
                    let mut bare = http::Response::new(lambda_http::Body::Empty);
                    *bare.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    buffer(axum::response::IntoResponse::into_response(failed))
                        .await
                        .unwrap_or(bare)
                }
            })
        })
    }
}

/// `response` with its body read whole.
async fn buffer(
    response: axum::response::Response,
) -> Result<http::Response<lambda_http::Body>, axum::Error> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await?;
    Ok(http::Response::from_parts(
        parts,
        lambda_http::Body::from(bytes.to_vec()),
    ))
}

/// How S3-side events are worked through.
#[derive(Debug, Clone)]
pub(crate) struct EventOptions {
    /// Objects classified at once within one invoke.
    pub(crate) concurrency: usize,
    /// The only objects events may name (`CATDOG_UPLOADS`); `None`: none.
    pub(crate) scope: Option<ObjectScope>,
    /// Time kept before the invoke's deadline: objects not done by then
    /// are answered as unfinished (to be retried), not timed out.
    pub(crate) margin: Duration,
}

/// Answers every event kind; cheap to clone (one per invoke).
#[derive(Clone)]
pub(crate) struct EventHandler {
    router: axum::Router,
    objects: Option<ObjectWorker>,
    options: EventOptions,
}

impl EventHandler {
    pub(crate) fn new(
        router: axum::Router,
        objects: Option<ObjectWorker>,
        options: EventOptions,
    ) -> Self {
        Self {
            router,
            objects,
            options: EventOptions {
                concurrency: options.concurrency.max(1),
                ..options
            },
        }
    }

    /// The answer to one invoke.
    pub(crate) async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, EventError> {
        let LambdaEvent { payload, context } = event;
        // Lambda's longest invoke, for a context that names no deadline.
        let stop = lambda_stop(context.deadline, self.options.margin)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(15 * 60));
        match EventKind::identify(payload)? {
            EventKind::Http(request) => {
                let mut adapter = Adapter::from(Buffered(self.router.clone()));
                let response = match adapter.call(LambdaEvent::new(*request, context)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok(serde_json::to_value(response).expect("an HTTP response serializes"))
            }
            EventKind::S3(event) => {
                self.asynchronous(notifications::s3_objects(&event), stop)
                    .await
            }
            EventKind::EventBridge(event) => {
                self.asynchronous(vec![notifications::eventbridge_object(&event)], stop)
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
                let outcomes = self.run_all(wanted, stop).await?;
                // A message that cannot be read is kept too: after the
                // queue's receive limit it reaches the dead-letter queue,
                // where someone can see it, instead of vanishing.
                let mut retry: Vec<String> = which
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| o.retryable() || matches!(o, Done::Bad(_)))
                    .map(|(&i, _)| ids[i].clone())
                    .collect();
                retry.dedup();
                Ok(serde_json::to_value(notifications::sqs_response(retry)).expect("serializes"))
            }
            EventKind::Batch(event) => {
                let wanted = event.tasks.iter().map(batch::task_object).collect();
                let outcomes = self.run_all(wanted, stop).await?;
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
    async fn asynchronous(&self, wanted: Vec<Wanted>, stop: Instant) -> Result<Value, EventError> {
        let outcomes = self.run_all(wanted, stop).await?;
        let retryable: Vec<&Done> = outcomes.iter().filter(|o| o.retryable()).collect();
        if let Some(first) = retryable.first() {
            return Err(EventError::Retry {
                failed: retryable.len(),
                total: outcomes.len(),
                first: first.summary(),
            });
        }
        let answer = DirectAnswer {
            objects: outcomes.iter().map(Done::answer).collect(),
        };
        Ok(serde_json::to_value(answer).expect("serializes"))
    }

    /// Every wanted object, `concurrency` at a time, in order; those outside
    /// the uploads area refused before any S3 call, those not done by
    /// `stop` left unfinished.
    async fn run_all(&self, wanted: Vec<Wanted>, stop: Instant) -> Result<Vec<Done>, EventError> {
        let worker = self.objects.clone().ok_or_else(|| {
            EventError::NoObjects("S3 events need the Lambda bootstrap's S3 client".into())
        })?;
        let scope = self.options.scope.as_ref();
        Ok(futures_util::stream::iter(wanted)
            .map(|w| {
                let worker = worker.clone();
                async move {
                    let object = match w {
                        Wanted::Object(object) => object,
                        Wanted::Nothing(why) => return Done::Nothing(why),
                        Wanted::Bad(failure) => return Done::Bad(failure),
                    };
                    if let Err(e) = ObjectScope::admit(scope, &object) {
                        let error = redact_upload_ids(&e.to_string());
                        tracing::warn!(error, "event refused: object outside the uploads area");
                        return Done::Bad(Failure::permanent(
                            FailureCode::OutOfScope,
                            e.to_string(),
                        ));
                    }
                    match tokio::time::timeout_at(stop.into(), worker.run(object.clone())).await {
                        Ok(outcome) => Done::Ran(Box::new(outcome)),
                        Err(_) => {
                            let object_id = redact_upload_ids(&object.to_string());
                            tracing::warn!(
                                object = object_id,
                                "object not finished before the invoke's deadline"
                            );
                            Done::Unfinished(object)
                        }
                    }
                }
            })
            .buffered(self.options.concurrency)
            .collect()
            .await)
    }
}

/// What became of one record of an event.
#[derive(Debug)]
enum Done {
    Ran(Box<Outcome>),
    Nothing(String),
    Bad(Failure),
    /// Not finished before the invoke's deadline (less the margin).
    Unfinished(ObjectRef),
}

impl Done {
    fn retryable(&self) -> bool {
        match self {
            Done::Ran(o) => o.retryable(),
            Done::Nothing(_) => false,
            Done::Bad(f) => f.is_transient(),
            Done::Unfinished(_) => true,
        }
    }

    fn summary(&self) -> String {
        match self {
            Done::Ran(o) => o.summary(),
            Done::Nothing(why) => format!("nothing to do: {why}"),
            Done::Bad(f) => f.to_string(),
            Done::Unfinished(o) => format!("{o}: not finished before the invoke's deadline"),
        }
    }

    fn result_code(&self) -> ResultCode {
        match self {
            Done::Ran(o) => ResultCode::of(o),
            Done::Unfinished(_) => ResultCode::TemporaryFailure,
            Done::Nothing(_) => ResultCode::Succeeded,
            Done::Bad(f) if f.is_transient() => ResultCode::TemporaryFailure,
            Done::Bad(_) => ResultCode::PermanentFailure,
        }
    }

    fn answer(&self) -> ObjectAnswer<'_> {
        match self {
            Done::Ran(o) => match o.as_ref() {
                Outcome::Classified { record, reused } => {
                    let object = ObjectRef::new(&record.bucket, &record.key).to_string();
                    let label = record.label();
                    if *reused {
                        ObjectAnswer::Reused { object, label }
                    } else {
                        ObjectAnswer::Classified { object, label }
                    }
                }
                Outcome::Failed { object, failure } => ObjectAnswer::Failed {
                    object: Some(object.to_string()),
                    error: failure,
                },
                Outcome::Ignored { object, reason } => ObjectAnswer::Ignored {
                    object: object.to_string(),
                    reason,
                },
            },
            Done::Nothing(reason) => ObjectAnswer::Nothing { reason },
            Done::Unfinished(object) => ObjectAnswer::Unfinished {
                object: object.to_string(),
            },
            Done::Bad(failure) => ObjectAnswer::Failed {
                object: None,
                error: failure,
            },
        }
    }
}

/// A direct S3 or EventBridge invoke's answer: what became of each object.
#[derive(serde::Serialize)]
struct DirectAnswer<'a> {
    objects: Vec<ObjectAnswer<'a>>,
}

/// One object's line in it, by its `status`.
#[derive(serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum ObjectAnswer<'a> {
    Classified {
        object: String,
        label: Option<&'a str>,
    },
    /// Answered by a record already current for the same bytes and model.
    Reused {
        object: String,
        label: Option<&'a str>,
    },
    Failed {
        /// Absent when the event named no object catdog could read.
        #[serde(skip_serializing_if = "Option::is_none")]
        object: Option<String>,
        error: &'a Failure,
    },
    Ignored {
        object: String,
        reason: &'a str,
    },
    /// The event asked for no object (a test event, a folder marker).
    Nothing {
        reason: &'a str,
    },
    /// Not reached before the invoke's deadline.
    Unfinished {
        object: String,
    },
}
