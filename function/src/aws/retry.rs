//! The one retry policy of model fetching: how many tries, which pauses,
//! and which layer retries what, so that no two layers multiply.
//!
//! - The whole load (`model/load.rs`) is the one layer that retries a
//!   failure: HEAD or GET refused, timed out or answered 5xx, an object not
//!   uploaded yet. It runs [`RetryPolicy::run`].
//! - An S3 range whose body is cut after some bytes came resumes from its
//!   last byte (`source/s3.rs`) instead of starting the model again; a try
//!   that brings no byte is not retried there but fails the fetch, for the
//!   load to retry. Resumes are capped at `attempts` per range.
//! - The AWS SDK's own retries are off for fetches ([`SdkRetries::Off`]):
//!   its default 3 tries would multiply the load's.
//!
//! Worst case with the defaults (4 tries, pauses 0.5 s, 1 s, 2 s; S3 connect
//! timeout 5 s, read timeout `CATDOG_S3_READ_TIMEOUT_S` = 30 s), before the
//! error is reported with its cause:
//! - S3 refusing connections: 4 instant refusals + 3.5 s of pauses ≈ 4 s;
//! - S3 not reachable (packets dropped): 4 × 5 s + 3.5 s ≈ 24 s;
//! - S3 accepting and never answering, or stalling mid-body: 4 × 30 s +
//!   3.5 s ≈ 2 min (a range that stalled after some bytes may wait once
//!   more before its resume finds nothing);
//! - a server that trickles a few bytes before every stall: up to
//!   4 loads × 4 resumes × 30 s ≈ 8 min, the one case where the caps multiply.
//!
//! `serve` and the notebook retry loads without end ([`RetryPolicy::unbounded`]),
//! answering 503 with the reason meanwhile; Lambda's init phase ends first
//! at its own 10 s limit.

use std::future::Future;
use std::time::Duration;

use aws_config::retry::RetryConfig;

/// Tries of an operation that failed for a reason that may pass, with
/// doubling pauses between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retry; `u32::MAX`: until it works).
    pub(crate) attempts: u32,
    pub(crate) first_pause: Duration,
    pub(crate) max_pause: Duration,
}

impl Default for RetryPolicy {
    /// 4 tries, pauses 0.5 s, 1 s, 2 s: a blip is ridden out while a Lambda
    /// init (10 s budget) still fails in time with its cause.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_pause: Duration::from_millis(500),
            max_pause: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The same pauses, tried until it works (a server answering 503 meanwhile).
    pub(crate) fn unbounded(self) -> Self {
        RetryPolicy {
            attempts: u32::MAX,
            ..self
        }
    }

    /// The pause after `pause`: doubled, at most `max_pause`.
    pub(crate) fn next_pause(&self, pause: Duration) -> Duration {
        (pause * 2).min(self.max_pause)
    }

    /// Runs `attempt` until it succeeds, fails with an error `retryable`
    /// refuses, or the tries are spent (then its last error is returned).
    /// `on_retry` hears of each failure that will be tried again: the error,
    /// the try that failed (from 1) and the pause before the next.
    pub(crate) async fn run<T, E, Fut>(
        &self,
        mut attempt: impl FnMut() -> Fut,
        retryable: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(&E, u32, Duration),
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut pause = self.first_pause;
        let mut tried = 1;
        loop {
            match attempt().await {
                Err(e) if retryable(&e) && tried < self.attempts => {
                    on_retry(&e, tried, pause);
                    tokio::time::sleep(pause).await;
                    pause = self.next_pause(pause);
                    tried += 1;
                }
                result => return result,
            }
        }
    }

    /// The AWS SDK's retry setting for an S3 client. Fetches: off, because
    /// the load retries (the SDK's default 3 tries would multiply its tries).
    /// Uploads, which have no loop of their own: this policy's tries and
    /// pauses, in the SDK's standard mode.
    pub(crate) fn sdk_config(&self, use_: SdkRetries) -> RetryConfig {
        match use_ {
            SdkRetries::Off => RetryConfig::disabled(),
            SdkRetries::ThisPolicy => RetryConfig::standard()
                .with_max_attempts(self.attempts)
                .with_initial_backoff(self.first_pause)
                .with_max_backoff(self.max_pause),
        }
    }
}

/// Whether an S3 client retries by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkRetries {
    /// A loop of catdog's retries around it (fetching a model).
    Off,
    /// No loop around it (uploading): the SDK applies the policy.
    ThisPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_pause: Duration::from_millis(1),
            max_pause: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn tries_until_success_or_the_tries_are_spent() {
        let calls = Cell::new(0);
        let heard = Cell::new(0);
        let r: Result<u32, &str> = quick(4)
            .run(
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        if n < 3 {
                            Err("blip")
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_| true,
                |_, _, _| heard.set(heard.get() + 1),
            )
            .await;
        assert_eq!((r, calls.get(), heard.get()), (Ok(3), 3, 2));

        calls.set(0);
        let r: Result<u32, &str> = quick(4)
            .run(
                || {
                    calls.set(calls.get() + 1);
                    async { Err("down") }
                },
                |_| true,
                |_, _, _| {},
            )
            .await;
        assert_eq!((r, calls.get()), (Err("down"), 4));
    }

    #[tokio::test]
    async fn a_failure_that_will_not_pass_is_not_retried() {
        let calls = Cell::new(0);
        let r: Result<(), &str> = quick(4)
            .run(
                || {
                    calls.set(calls.get() + 1);
                    async { Err("bad bytes") }
                },
                |_| false,
                |_, _, _| panic!("not retried"),
            )
            .await;
        assert_eq!((r, calls.get()), (Err("bad bytes"), 1));
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.next_pause(Duration::from_secs(1)), Duration::from_secs(2));
        assert_eq!(
            p.next_pause(Duration::from_secs(50)),
            Duration::from_secs(60)
        );
        assert_eq!(p.sdk_config(SdkRetries::Off).max_attempts(), 1);
        assert_eq!(p.sdk_config(SdkRetries::ThisPolicy).max_attempts(), 4);
    }
}
