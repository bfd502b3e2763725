//! One object from its address to its written answer: skip catdog's own
//! records, answer a repeated event from a current record, else GET the
//! object, classify it through the [`pipeline`] (the limits, decoding and
//! batcher of every request), tag it, and write the record.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::failure::{Failure, FailureCode};
use super::location::{redact_upload_ids, ObjectRef};
use super::record::{ObjectRecord, ObjectTimings, RecordModel, RecordResult};
use super::results::{self, ResultsConfig};
use super::store::ObjectStore;
use crate::error::{ApiError, ErrorCode};
use crate::limits::Limits;
use crate::model::Classifier;
use crate::pipeline::{self, ModelSlot, Payload, Ready};

/// What became of one object.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Classified now, or (`reused`) answered by a record already current
    /// for the same bytes and model.
    Classified { record: ObjectRecord, reused: bool },
    /// Not classified, and why (written in its record where records are on
    /// and the failure is permanent).
    Failed { object: ObjectRef, failure: Failure },
    /// A key under the results prefix: catdog's own, never classified.
    Ignored { object: ObjectRef, reason: String },
}

impl Outcome {
    /// A transient failure: the event source should try it again.
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, Outcome::Failed { failure, .. } if failure.is_transient())
    }

    pub fn object(&self) -> ObjectRef {
        match self {
            Outcome::Classified { record, .. } => ObjectRef::new(&record.bucket, &record.key)
                .with_version(record.version_id.clone())
                .with_etag(record.etag.clone()),
            Outcome::Failed { object, .. } | Outcome::Ignored { object, .. } => object.clone(),
        }
    }

    /// One line: the answer, the failure or why it was skipped.
    pub(crate) fn summary(&self) -> String {
        match self {
            Outcome::Classified { record, .. } => record.summary(),
            Outcome::Failed { failure, .. } => failure.to_string(),
            Outcome::Ignored { reason, .. } => format!("ignored: {reason}"),
        }
    }
}

/// Classifies objects for every event kind and the command line.
#[derive(Clone)]
pub struct ObjectWorker {
    pub(crate) store: ObjectStore,
    /// The model requests are answered with.
    pub(crate) model: ModelSlot,
    /// The limits every request runs under.
    pub(crate) limits: Limits,
    pub(crate) results: ResultsConfig,
}

impl ObjectWorker {
    pub(crate) fn new(
        store: ObjectStore,
        model: ModelSlot,
        limits: Limits,
        results: ResultsConfig,
    ) -> Self {
        Self {
            store,
            model,
            limits,
            results,
        }
    }

    /// Classifies `object` and writes its results; never panics, never
    /// fails its neighbours: every problem is this object's [`Outcome`].
    pub(crate) async fn run(&self, object: ObjectRef) -> Outcome {
        let started = Instant::now();
        if self.results.is_result_key(&object.key) {
            return Outcome::Ignored {
                reason: format!(
                    "{object} is under the results prefix {:?}: catdog's own record",
                    self.results.prefix
                ),
                object,
            };
        }
        let outcome = match self.classify_object(&object, started).await {
            Ok((record, reused)) => Outcome::Classified { record, reused },
            Err((object, failure)) => {
                self.record_failure(&object, &failure, started).await;
                Outcome::Failed { object, failure }
            }
        };
        log(&outcome, started);
        outcome
    }

    async fn classify_object(
        &self,
        object: &ObjectRef,
        started: Instant,
    ) -> Result<(ObjectRecord, bool), (ObjectRef, Failure)> {
        let fail = |f: Failure| (object.clone(), f);
        let ready = self
            .model
            .ready()
            .map_err(|e| fail(ApiError::from(e).into()))?;
        let model = record_model(&ready.classifier).await;
        if let Some(record) = self.current_record(object, &model).await {
            return Ok((record, true));
        }
        let t = Instant::now();
        let fetched = self
            .store
            .get(object, self.limits.max_object_bytes)
            .await
            .map_err(fail)?;
        let get_ms = ms(t);
        let object = object
            .clone()
            .with_etag(fetched.etag.clone().or(object.etag.clone()))
            .with_version(fetched.version_id.clone().or(object.version_id.clone()));
        let fail = |f: Failure| (object.clone(), f);
        let (label, confidence, scores, timings) = self
            .infer(&ready, fetched.bytes, started, get_ms)
            .await
            .map_err(fail)?;
        let mut record = ObjectRecord {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            etag: object.etag.clone(),
            model,
            result: RecordResult::Classified {
                label,
                confidence,
                scores,
            },
            timings_ms: timings,
        };
        let t = Instant::now();
        // Tags first, then the record: a record on S3 means the tags are
        // there too, so a retry that finds it has nothing left to do.
        if self.results.tags {
            self.write_tags(&object, &record).await.map_err(fail)?;
        }
        record.timings_ms.write = ms(t);
        record.timings_ms.total = ms(started);
        if self.results.record {
            let (bucket, key) = self.results.record_location(&object.bucket, &object.key);
            self.store
                .put_record(&bucket, &key, &record)
                .await
                .map_err(fail)?;
            record.timings_ms.write = ms(t);
            record.timings_ms.total = ms(started);
        }
        Ok((record, false))
    }

    /// The record already written for these bytes by this model, if any.
    async fn current_record(
        &self,
        object: &ObjectRef,
        model: &RecordModel,
    ) -> Option<ObjectRecord> {
        if !self.results.record {
            return None;
        }
        let (bucket, key) = self.results.record_location(&object.bucket, &object.key);
        let record = self.store.get_record(&bucket, &key).await.ok()??;
        // A task that names no ETag or version (Batch Operations) learns
        // the object's by a HEAD, far cheaper than a second inference.
        let object = if object.etag.is_none() && object.version_id.is_none() {
            self.store.head(object).await.ok()?
        } else {
            object.clone()
        };
        record
            .is_current_for(&object, &model.sha256)
            .then_some(record)
    }

    async fn infer(
        &self,
        ready: &Ready,
        bytes: Bytes,
        started: Instant,
        get_ms: f64,
    ) -> Result<(String, f32, BTreeMap<String, f32>, ObjectTimings), Failure> {
        let (mut predictions, t) = pipeline::run(
            ready,
            Payload::Encoded(vec![bytes]),
            &self.limits,
            false,
            started,
            get_ms,
        )
        .await
        .map_err(Failure::from)?;
        let p = predictions
            .pop()
            .ok_or_else(|| Failure::transient(ErrorCode::Internal, "the model gave no answer"))?;
        let scores = p.scores.0.into_iter().collect();
        Ok((
            p.label,
            p.confidence,
            scores,
            ObjectTimings {
                get: get_ms,
                decode: t.decode,
                preprocess: t.preprocess,
                inference: t.inference,
                write: 0.0,
                total: t.total,
            },
        ))
    }

    async fn write_tags(&self, object: &ObjectRef, record: &ObjectRecord) -> Result<(), Failure> {
        let RecordResult::Classified {
            label, confidence, ..
        } = &record.result
        else {
            return Ok(());
        };
        let model = record
            .model
            .version
            .clone()
            .unwrap_or_else(|| record.model.sha256.clone());
        let ours = [
            (results::TAG_LABEL, results::tag_value(label)),
            (results::TAG_CONFIDENCE, format!("{confidence:.4}")),
            (
                results::TAG_MODEL,
                results::tag_value(&format!("{}@{model}", record.model.name)),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let existing = self.store.tags(object).await?;
        let merged = results::merge_tags(existing, &ours)
            .map_err(|e| Failure::permanent(FailureCode::TagLimit, e.to_string()))?;
        self.store.put_tags(object, &merged).await
    }

    /// A permanent failure is written where records are on, so the bucket
    /// says why an object has no label; a transient one will be tried again.
    async fn record_failure(&self, object: &ObjectRef, failure: &Failure, started: Instant) {
        if !self.results.record
            || failure.is_transient()
            || failure.code == FailureCode::Api(ErrorCode::NoSuchKey)
        {
            return;
        }
        let model = match self.model.ready() {
            Ok(ready) => record_model(&ready.classifier).await,
            Err(_) => return,
        };
        let record = ObjectRecord {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            etag: object.etag.clone(),
            model,
            result: RecordResult::Failed {
                error: failure.clone(),
            },
            timings_ms: ObjectTimings {
                total: ms(started),
                ..ObjectTimings::default()
            },
        };
        let (bucket, key) = self.results.record_location(&object.bucket, &object.key);
        if let Err(e) = self.store.put_record(&bucket, &key, &record).await {
            let (object, error) = (
                redact_upload_ids(&object.to_string()),
                redact_upload_ids(&e.to_string()),
            );
            tracing::warn!(object, error, "could not write the failure record");
        }
    }
}

/// The model as a record names it, its digest waited for (a local file's
/// is computed in the background at start; remote models have it at once).
async fn record_model(classifier: &Classifier) -> RecordModel {
    let deadline = Instant::now() + Duration::from_secs(60);
    while classifier.sha256().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    RecordModel {
        name: classifier.name().to_string(),
        version: classifier.version().map(str::to_string),
        sha256: classifier.sha256().unwrap_or_default().to_string(),
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// One structured line per object; upload ids cut out (the capability to
/// read an upload's answer stays out of the logs).
fn log(outcome: &Outcome, started: Instant) {
    let total_ms = ms(started);
    let object = redact_upload_ids(&outcome.object().to_string());
    match outcome {
        Outcome::Classified { record, reused } => tracing::info!(
            object,
            label = record.label().unwrap_or(""),
            reused,
            get_ms = record.timings_ms.get,
            inference_ms = record.timings_ms.inference,
            write_ms = record.timings_ms.write,
            total_ms,
            "object classified"
        ),
        Outcome::Failed { failure, .. } => tracing::warn!(
            object,
            code = %failure.code,
            kind = ?failure.kind,
            error = redact_upload_ids(&failure.message),
            total_ms,
            "object failed"
        ),
        Outcome::Ignored { reason, .. } => {
            tracing::info!(object, reason = redact_upload_ids(reason), "object ignored")
        }
    }
}
