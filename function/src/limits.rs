//! The limits every request is held to (documented in docs/api.md's
//! "Limits"), and how requests share the inference thread.

use std::time::Duration;

use crate::decode::DecodeLimits;
use crate::memory::MemoryPolicy;

/// Default request body limit: Lambda's 6 MB synchronous payload limit.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Default size limit of a picture read from S3 (uploads, events, Batch
/// Operations, `/predict {"s3": …}`): past the invoke limit, which is the
/// point of that path, and still bounded (the pixel limit applies as well).
pub(crate) const DEFAULT_MAX_OBJECT_BYTES: usize = 64 * 1024 * 1024;
/// Default maximum pictures per request.
pub(crate) const DEFAULT_MAX_BATCH: usize = 16;
/// Default batching window, in milliseconds.
pub(crate) const DEFAULT_BATCH_WINDOW_MS: u64 = 2;
/// Default bound on requests waiting for inference.
pub(crate) const DEFAULT_MAX_QUEUED: usize = 64;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Largest picture read from S3 (see [`DEFAULT_MAX_OBJECT_BYTES`]).
    pub max_object_bytes: usize,
    pub max_batch: usize,
    pub decode: DecodeLimits,
    /// Micro-batching window and the bound on requests waiting for the model.
    pub batching: BatchPolicy,
    /// The budget of decoded pictures in flight.
    pub memory: MemoryPolicy,
    /// How long a request (and on Lambda, an invoke) may take.
    pub timeouts: Timeouts,
}

/// How long a request may take (`http::deadline`), and how much of an
/// invoke's time is kept to answer it (the event handler).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest pause between two pieces of a request's body (then 408).
    pub(crate) body_idle: Duration,
    /// A whole request, from its head to its answer (then 408 if its body
    /// had not all come, else 503 `deadline_exceeded`).
    pub(crate) request: Duration,
    /// Time kept before Lambda's invoke deadline: new work stops there, so
    /// the invoke answers (503, or the events it could not finish) instead
    /// of timing out.
    pub(crate) lambda_margin: Duration,
}

/// [`Timeouts::body_idle`]'s default, in seconds.
pub(crate) const DEFAULT_BODY_TIMEOUT_S: f64 = 10.0;
/// [`Timeouts::request`]'s default, in seconds.
pub(crate) const DEFAULT_REQUEST_TIMEOUT_S: f64 = 60.0;
/// [`Timeouts::lambda_margin`]'s default, in ms.
pub(crate) const DEFAULT_DEADLINE_MARGIN_MS: u64 = 2_000;

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            body_idle: Duration::from_secs_f64(DEFAULT_BODY_TIMEOUT_S),
            request: Duration::from_secs_f64(DEFAULT_REQUEST_TIMEOUT_S),
            lambda_margin: Duration::from_millis(DEFAULT_DEADLINE_MARGIN_MS),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            decode: DecodeLimits::default(),
            batching: BatchPolicy::default(),
            memory: MemoryPolicy::default(),
            timeouts: Timeouts::default(),
        }
    }
}

/// How requests are grouped and how many may wait.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// How long the first job of a batch waits for company (0: no batching).
    pub(crate) window: Duration,
    /// Most pictures run in one batch.
    pub(crate) max_pictures: usize,
    /// Most requests waiting for the inference thread; more are refused.
    pub(crate) max_queued: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(DEFAULT_BATCH_WINDOW_MS),
            max_pictures: DEFAULT_MAX_BATCH,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

/// Limits on connections (`catdog serve`'s settings).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Time a connection has to send a whole request head (line and
    /// headers), for its first request and each next one on keep-alive.
    pub(crate) header_timeout: Duration,
    /// Connections open at once; past it, new ones wait in the listen
    /// backlog until one closes.
    pub(crate) max_connections: usize,
}
