//! SnapStart (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`): Lambda runs init
//! once, when a version is published, snapshots the environment's memory,
//! and resumes every new environment from that snapshot, minutes or weeks
//! later. What init made is then shared by all of them, and stale:
//!
//! - S3 connections: frozen mid-life, their peers long gone. Every S3
//!   client catdog keeps is dropped before the snapshot (its connections
//!   close with it) and made again at its first use after the restore.
//! - credentials: a snapshot's are another environment's and may have
//!   expired. After the restore they are read again from the environment
//!   as it is then (Lambda gives SnapStart functions the container
//!   credentials endpoint, `AWS_CONTAINER_CREDENTIALS_FULL_URI`); an
//!   environment that cannot read any fails its restore, through the
//!   Runtime API, instead of failing every request.
//! - randomness: upload ids are drawn from the kernel at each upload
//!   (`getrandom`, which Linux reseeds for a restored VM), never from a
//!   generator seeded at init, so two environments never share them.
//!   Nothing else catdog keeps is seeded by time or randomness at init.
//!
//! The runtime (lambda_runtime) calls the hooks: `before_snapshot`, then
//! `/restore/next`, which returns once restored, then `after_restore`.

use futures_util::future::BoxFuture;
use lambda_http::lambda_runtime::{Error, SnapStartResource};

use crate::aws::s3::{forget_made, read_credentials};

/// Why a restored environment cannot serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    #[error("after the SnapStart restore: {0}")]
    Credentials(#[from] crate::aws::s3::NoCredentials),
}

/// The AWS side of catdog: its S3 clients and the credentials they use.
pub(crate) struct AwsClients;

impl SnapStartResource for AwsClients {
    fn before_snapshot(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async {
            let dropped = forget_made().await;
            tracing::info!(
                s3_clients = dropped,
                "SnapStart: S3 clients dropped before the snapshot"
            );
            Ok(())
        })
    }

    fn after_restore(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async {
            // Anything made between the two hooks belongs to the snapshot too.
            forget_made().await;
            read_credentials().await.map_err(RestoreError::from)?;
            tracing::info!(
                "SnapStart: restored; credentials read again, S3 clients made at first use"
            );
            Ok(())
        })
    }
}
