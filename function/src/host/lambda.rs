//! The Lambda host: the model is loaded during the init phase (a fetch that
//! may pass is retried, bounded), then every invoke goes to the one
//! [`EventHandler`]: HTTP events through the one router (as
//! `lambda_http::run` would), S3 notifications, EventBridge, SQS and Batch
//! Operations through the object worker. An init failure is reported to
//! the Runtime API's `/init/error`, so the invoke names its cause instead
//! of timing out.

use std::time::Duration;

use lambda_http::lambda_runtime::{self, Diagnostic};

use crate::events::dispatch::EventError;
use crate::events::EventHandler;
use crate::host::snapstart::AwsClients;
use crate::http::access::AccessError;
use crate::http::state::AppState;
use crate::model::load::{self, LoadError};
use crate::objects::store::ObjectStore;
use crate::objects::ObjectWorker;
use crate::settings::Settings;

/// Why the bootstrap stopped.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error("access settings: {0}")]
    Access(#[from] AccessError),
    #[error("loading the model during Lambda init: {0}")]
    Load(#[from] LoadError),
    #[error("the Lambda runtime stopped: {0}")]
    Runtime(String),
    #[error(transparent)]
    NotOnLambda(#[from] NotOnLambda),
    #[error(transparent)]
    Feedback(#[from] crate::feedback::Overlap),
}

/// A Lambda host started outside Lambda: without the Runtime API the
/// runtime would panic on its first missing variable.
#[derive(Debug, thiserror::Error)]
#[error(
    "`catdog {0}` runs inside AWS Lambda, and AWS_LAMBDA_RUNTIME_API is not set; \
     to try it here, run it under cargo-lambda's emulator (docs/deploy.md)"
)]
pub struct NotOnLambda(pub &'static str);

/// The Runtime API's address, which every Lambda host needs before anything else.
pub(crate) fn runtime_api<'s>(
    settings: &'s Settings,
    command: &'static str,
) -> Result<&'s str, NotOnLambda> {
    settings
        .process
        .lambda_runtime_api
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .ok_or(NotOnLambda(command))
}

/// Runs the bootstrap until the Runtime API goes away.
pub async fn run(settings: &Settings) -> Result<(), LambdaError> {
    let api = runtime_api(settings, "lambda")?;
    let ready = async {
        let access = crate::host::secret_key::access(settings).await?;
        // Settings are refused before the model is fetched, not after.
        let feedback = settings.feedback_sink()?;
        let classifier = load::load_classifier_with_retries(
            &settings.model_spec(),
            settings.retry_policy(),
            |_, _, _| {},
        )
        .await?;
        let state = AppState::loading(settings.request_limits(), access)
            .with_emf(settings.emf())
            .with_stored_pictures(settings.stored_pictures())
            .with_feedback(feedback);
        state.set_ready(std::sync::Arc::new(classifier));
        Ok::<_, LambdaError>(state)
    };
    let state = match ready.await {
        Ok(state) => state,
        Err(e) => {
            report_init_error(api, &e.to_string()).await;
            return Err(e);
        }
    };
    let handler = event_handler(settings, state);
    let service = lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let handler = handler.clone();
            async move { handler.handle(event).await.map_err(diagnostic) }
        },
    );
    tracing::info!(
        invokes_at_once = settings.lambda_concurrency(),
        snapstart = settings.snapstart(),
        "taking invokes"
    );
    // One loop, or AWS_LAMBDA_MAX_CONCURRENCY loops (Managed Instances)
    // into the same router and micro-batcher; SnapStart's hooks run first
    // when AWS_LAMBDA_INITIALIZATION_TYPE says so.
    lambda_runtime::Runtime::new(service)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .register_snapstart_resource(std::sync::Arc::new(AwsClients))
        .run_concurrent()
        .await
        .map_err(|e| LambdaError::Runtime(e.to_string()))
}

/// The handler of every event kind, over the router and an S3 client made
/// at its first use (the SDK retries throttling by itself, within the
/// settings' retry policy, before an object's failure is reported as one
/// that may pass).
pub(crate) fn event_handler(settings: &Settings, state: AppState) -> EventHandler {
    let fetch = settings.fetch_options();
    let worker = ObjectWorker::new(
        ObjectStore::lazy(fetch.s3),
        state.model_slot(),
        state.limits,
        settings.results_config(),
    );
    EventHandler::new(
        crate::http::router(state),
        Some(worker),
        settings.event_options(),
    )
}

/// An invoke's failure as Lambda reports it: a type that says which.
fn diagnostic(e: EventError) -> Diagnostic {
    let kind = match &e {
        EventError::Unknown(_) => "catdog.UnknownEvent",
        EventError::NoObjects(_) => "catdog.NoObjects",
        EventError::Retry { .. } => "catdog.RetryableFailure",
    };
    tracing::warn!(error = %e, "invoke failed");
    Diagnostic {
        error_type: kind.into(),
        error_message: e.to_string(),
    }
}

/// Tells the Lambda service why init failed. `api` is `AWS_LAMBDA_RUNTIME_API`
/// as Lambda gives it (`host:port`) or as emulators do (`http://host:port/base`):
/// read by the runtime's own client, which accepts both.
pub(crate) async fn report_init_error(api: &str, message: &str) {
    match send_init_error(api, message).await {
        Ok(status) if status.is_success() => {}
        Ok(status) => tracing::warn!(%status, "the Runtime API refused the init error report"),
        Err(e) => tracing::warn!(error = %e, "could not report the init error to the Runtime API"),
    }
}

/// Why the init error could not be reported.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("AWS_LAMBDA_RUNTIME_API {0:?}: {1}")]
    Address(String, http::uri::InvalidUri),
    #[error("AWS_LAMBDA_RUNTIME_API {0:?} names no host")]
    NoHost(String),
    #[error("{0}")]
    Client(String),
    #[error("no answer within 2 s")]
    Timeout,
}

async fn send_init_error(api: &str, message: &str) -> Result<http::StatusCode, ReportError> {
    let base: http::Uri = api
        .parse()
        .map_err(|e| ReportError::Address(api.to_string(), e))?;
    if base.authority().is_none() {
        return Err(ReportError::NoHost(api.to_string()));
    }
    let client = lambda_runtime_api_client::Client::builder()
        .with_endpoint(base)
        .build()
        .map_err(|e| ReportError::Client(e.to_string()))?;
    let body =
        serde_json::json!({"errorMessage": message, "errorType": "Runtime.InitError"}).to_string();
    let request = http::Request::post("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(lambda_runtime_api_client::body::Body::from(body))
        .map_err(|e| ReportError::Client(e.to_string()))?;
    let response = tokio::time::timeout(Duration::from_secs(2), client.call(request))
        .await
        .map_err(|_| ReportError::Timeout)?
        .map_err(|e| ReportError::Client(e.to_string()))?;
    Ok(response.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A Runtime API stand-in that records the paths it is sent to.
    async fn recorder() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let log = log.clone();
            async move {
                let path = req.uri().path().to_string();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                log.lock()
                    .unwrap()
                    .push((path, String::from_utf8_lossy(&body).into_owned()));
                axum::http::StatusCode::ACCEPTED
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr.to_string(), seen)
    }

    #[tokio::test]
    async fn the_init_error_reaches_the_api_in_both_forms_of_its_address() {
        let (addr, seen) = recorder().await;
        // As Lambda gives it, and as cargo-lambda's emulator does (scheme and base path).
        for api in [addr.clone(), format!("http://{addr}/.rt")] {
            assert_eq!(
                send_init_error(&api, "no model").await.unwrap(),
                http::StatusCode::ACCEPTED,
                "{api}"
            );
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0].0, "/2018-06-01/runtime/init/error");
        assert_eq!(seen[1].0, "/.rt/2018-06-01/runtime/init/error");
        for (_, body) in &seen {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["errorMessage"], "no model");
            assert_eq!(v["errorType"], "Runtime.InitError");
        }
        assert!(send_init_error("/no/host", "x").await.is_err());
    }
}
