//! Micro-batching and admission control for inference.
//!
//! Requests hand their decoded pictures to one inference thread per model.
//! The thread takes the first waiting job, gathers whatever else arrives
//! within a short window (up to the batch limit), runs them as one batch and
//! sends each request its own answers. The queue in front of it is bounded:
//! when it is full a request is refused at once (the router answers 503 with
//! Retry-After) instead of the backlog and memory growing without bound.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use crate::limits::BatchPolicy;
use crate::model::classifier::Answer;
use crate::model::explain::Heatmap;
use crate::model::output::Prediction;
use crate::model::{Classifier, InferTimings, ModelError};
use crate::preprocess::Tensor;

/// Why a job got no answers.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    #[error("too many requests are waiting for the model ({0}); retry shortly")]
    Busy(usize),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the inference thread stopped")]
    Stopped,
}

/// The batcher's reply to one request: its answers, and how its batch went.
#[derive(Debug)]
pub(crate) struct BatcherReply {
    pub(crate) predictions: Vec<Prediction>,
    /// Per picture, the graph's explanation when the job asked for one and
    /// the model has an explanation branch.
    pub(crate) heatmaps: Vec<Option<Heatmap>>,
    pub(crate) timings: InferTimings,
    /// Pictures in the batch this request ran in (its own included).
    pub(crate) batch_pictures: usize,
    /// Time spent waiting in the queue before its batch started, ms.
    pub(crate) queued_ms: f64,
}

struct Job {
    pictures: Vec<Tensor>,
    explain: bool,
    enqueued: Instant,
    reply: oneshot::Sender<Result<BatcherReply, BatchError>>,
}

/// What the inference thread runs: the classifier (a stand-in in tests).
pub(crate) trait Infer: Send + Sync + 'static {
    /// The batch size the graph is fixed to, if it is.
    fn fixed_batch(&self) -> Option<usize>;
    /// Answers for `pictures`, in order, each with its explanation when
    /// `explain` (and the model can).
    fn infer(
        &self,
        pictures: &[Tensor],
        explain: bool,
    ) -> Result<(Vec<Answer>, InferTimings), ModelError>;
}

impl Infer for Classifier {
    fn fixed_batch(&self) -> Option<usize> {
        Classifier::fixed_batch(self)
    }

    fn infer(
        &self,
        pictures: &[Tensor],
        explain: bool,
    ) -> Result<(Vec<Answer>, InferTimings), ModelError> {
        if explain {
            self.classify_explained(pictures)
        } else {
            let (answers, timings) = self.classify(pictures)?;
            Ok((answers.into_iter().map(|a| (a, None)).collect(), timings))
        }
    }
}

/// Hands pictures to the model's inference thread. Cheap to clone; the
/// thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: SyncSender<Job>,
    policy: BatchPolicy,
}

impl Batcher {
    /// Starts the inference thread for `classifier`; each run's size is
    /// observed in `batch_sizes`.
    pub(crate) fn start(
        classifier: Arc<impl Infer>,
        policy: BatchPolicy,
        batch_sizes: Histogram,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(policy.max_queued.max(1));
        let p = policy;
        std::thread::Builder::new()
            .name("catdog-infer".into())
            .spawn(move || run(classifier, rx, p, batch_sizes))
            .expect("spawning the inference thread");
        Self { tx, policy }
    }

    /// Queues `pictures` and waits for their answers; refuses at once when
    /// the queue is full.
    pub(crate) async fn submit(&self, pictures: Vec<Tensor>) -> Result<BatcherReply, BatchError> {
        self.submit_asking(pictures, false).await
    }

    /// [`Batcher::submit`], with explanations when `explain` (the batch it
    /// joins then runs the model's explanation branch for all its pictures;
    /// only the jobs that asked get theirs).
    pub(crate) async fn submit_asking(
        &self,
        pictures: Vec<Tensor>,
        explain: bool,
    ) -> Result<BatcherReply, BatchError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            pictures,
            explain,
            enqueued: Instant::now(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(BatchError::Busy(self.policy.max_queued)),
            Err(TrySendError::Disconnected(_)) => return Err(BatchError::Stopped),
        }
        answer.await.unwrap_or(Err(BatchError::Stopped))
    }
}

fn run(
    classifier: Arc<impl Infer>,
    rx: Receiver<Job>,
    policy: BatchPolicy,
    batch_sizes: Histogram,
) {
    let max = policy.max_pictures.max(1);
    // A graph with a fixed batch size runs pictures one group at a time
    // anyway: waiting for company would only add latency.
    let batches = classifier.fixed_batch().is_none() && !policy.window.is_zero();
    // A job that did not fit the previous batch starts the next one.
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let mut jobs = vec![first];
        let mut count = jobs[0].pictures.len();
        let deadline = Instant::now() + policy.window;
        while count < max && batches {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(left)
            };
            match next {
                Ok(j) if count + j.pictures.len() <= max => {
                    count += j.pictures.len();
                    jobs.push(j);
                }
                Ok(j) => {
                    carry = Some(j);
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let sizes: Vec<usize> = jobs.iter().map(|j| j.pictures.len()).collect();
        let pictures: Vec<Tensor> = jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.pictures))
            .collect();
        batch_sizes.observe(count as f64);
        let explain = jobs.iter().any(|j| j.explain);
        // A panic in inference (ONNX Runtime, a bug of ours) fails this
        // batch's requests, not every later one: the thread goes on.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            classifier.infer(&pictures, explain)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "inference panicked; the inference thread goes on");
            Err(ModelError::Inference("inference panicked".into()))
        });
        drop(pictures);
        match result {
            Ok((answers, timings)) => {
                let mut it = answers.into_iter();
                for (job, n) in jobs.into_iter().zip(sizes) {
                    let (mine, heatmaps): (Vec<Prediction>, Vec<Option<Heatmap>>) =
                        it.by_ref().take(n).unzip();
                    let heatmaps = if job.explain {
                        heatmaps
                    } else {
                        vec![None; heatmaps.len()]
                    };
                    let answer = if mine.len() == n {
                        Ok(BatcherReply {
                            predictions: mine,
                            heatmaps,
                            timings,
                            batch_pictures: count,
                            queued_ms: (started - job.enqueued).as_secs_f64() * 1e3,
                        })
                    } else {
                        Err(BatchError::Model(ModelError::Inference(
                            "fewer answers than pictures".into(),
                        )))
                    };
                    let _ = job.reply.send(answer);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(BatchError::Model(ModelError::Inference(
                        message.clone(),
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Panics on its first run, then answers (no pictures, no answers).
    struct PanicsOnce(AtomicUsize);

    impl Infer for PanicsOnce {
        fn fixed_batch(&self) -> Option<usize> {
            None
        }

        fn infer(&self, _: &[Tensor], _: bool) -> Result<(Vec<Answer>, InferTimings), ModelError> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("a bug in inference");
            }
            Ok((Vec::new(), InferTimings::default()))
        }
    }

    #[tokio::test]
    async fn a_panic_fails_its_batch_and_the_thread_serves_the_next() {
        let policy = BatchPolicy {
            window: std::time::Duration::ZERO,
            max_pictures: 4,
            max_queued: 4,
        };
        let model = Arc::new(PanicsOnce(AtomicUsize::new(0)));
        let batcher = Batcher::start(model.clone(), policy, Histogram::new([1.0].into_iter()));
        let first = batcher.submit(Vec::new()).await;
        assert!(
            matches!(&first, Err(BatchError::Model(ModelError::Inference(m))) if m.contains("panicked")),
            "{first:?}"
        );
        let second = batcher.submit(Vec::new()).await;
        assert!(second.is_ok(), "{second:?}");
        assert_eq!(model.0.load(Ordering::SeqCst), 2);
    }
}
