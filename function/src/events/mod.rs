//! Every event the one Lambda bootstrap answers, told apart by its shape:
//! HTTP (Function URL, API Gateway, ALB: through the one router), S3 event
//! notifications, EventBridge "Object Created", SQS messages that carry S3
//! notifications, and S3 Batch Operations (schema 1.0 and 2.0). Each object
//! goes through [`crate::objects::ObjectWorker`]; what each event source
//! expects back (an error to retry, `batchItemFailures`, per-task result
//! codes) is made here.
//!
//! - [`kind`]: which event this is, or a clear refusal naming what arrived;
//! - [`notifications`]: S3, EventBridge and SQS events to objects, and their answers;
//! - [`batch`]: Batch Operations tasks and their results;
//! - [`dispatch`]: one invoke, start to answer.

pub(crate) mod batch;
pub(crate) mod dispatch;
pub(crate) mod kind;
pub(crate) mod notifications;

pub(crate) use dispatch::EventHandler;
