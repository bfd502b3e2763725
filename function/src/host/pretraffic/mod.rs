//! The CodeDeploy PreTraffic hook, a Lambda host of the same binary (the
//! function's Handler `pretraffic` selects it): CodeDeploy invokes it with
//! `{"DeploymentId", "LifecycleEventHookExecutionId"}` before shifting any
//! traffic to a new version; it runs the recorded checks against that
//! version ([`verify`]) and reports `Succeeded` only when every picture was
//! answered as recorded. Anything else — no checks, an unreadable picture,
//! a failed invoke, a disagreement, a panic, the time budget spent — reports
//! `Failed`: the hook never passes a version it could not check, and once it
//! has the ids it always reports (CodeDeploy would otherwise wait an hour).

mod clients;
pub(crate) mod verify;

use std::time::{Duration, SystemTime};

use aws_sdk_codedeploy::types::LifecycleEventStatus;
use lambda_http::lambda_runtime::{self, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

use crate::checks::ChecksError;
use crate::objects::store::ObjectStore;
use crate::settings::Settings;
use verify::{Target, Verdict};

/// Kept back from the invoke's deadline to report the outcome.
const REPORT_RESERVE: Duration = Duration::from_secs(20);

/// Why the hook's bootstrap stopped.
#[derive(Debug, thiserror::Error)]
pub enum PreTrafficError {
    #[error("the Lambda runtime stopped: {0}")]
    Runtime(String),
    #[error(transparent)]
    NotOnLambda(#[from] crate::host::lambda::NotOnLambda),
}

/// Why the checks did not run to a verdict: each is reported as `Failed`.
#[derive(Debug, thiserror::Error)]
enum NoVerdict {
    #[error("no function version to check: set CATDOG_CHECK_FUNCTION (template.yaml sets it to the new version)")]
    NoFunction,
    #[error("no checks to run: set CATDOG_CHECKS to s3://bucket/<model key>.checks.json")]
    NoChecksObject,
    #[error("{0}; record checks for the model with `catdog upload --model FILE --to s3://BUCKET/KEY --checks PICTURES…` (docs/deploy.md: Deploys with a safety net)")]
    Checks(ChecksError),
    #[error("the checks took longer than {0:?} (CATDOG_CHECK_TIMEOUT_S)")]
    OutOfTime(Duration),
    #[error("the checks stopped: {0}")]
    Stopped(String),
}

/// The ids CodeDeploy invokes a lifecycle hook with.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub(crate) struct LifecycleEvent {
    #[serde(rename = "DeploymentId")]
    pub(crate) deployment_id: String,
    #[serde(rename = "LifecycleEventHookExecutionId")]
    pub(crate) execution_id: String,
}

/// Everything one invoke needs, built once in the init phase.
#[derive(Clone)]
struct Hook {
    store: ObjectStore,
    lambda: aws_sdk_lambda::Client,
    codedeploy: aws_sdk_codedeploy::Client,
    function: Option<String>,
    checks: Option<(String, String)>,
    api_key: Option<String>,
    tolerance: f64,
    budget: Duration,
}

/// Runs the hook's bootstrap until the Runtime API goes away.
pub async fn run(settings: &Settings) -> Result<(), PreTrafficError> {
    crate::host::lambda::runtime_api(settings, "pretraffic")?;
    let hook = Hook::new(settings).await;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<Value>| {
            let hook = hook.clone();
            async move { hook.handle(event).await }
        },
    ))
    .await
    .map_err(|e| PreTrafficError::Runtime(e.to_string()))
}

impl Hook {
    async fn new(settings: &Settings) -> Self {
        let retry = settings.retry_policy();
        let fetch = settings.fetch_options();
        let shared = clients::shared().await;
        let s3 = crate::aws::s3_client(&fetch.s3, crate::aws::SdkRetries::ThisPolicy).await;
        let h = &settings.hook;
        Hook {
            store: ObjectStore::new(s3),
            lambda: clients::lambda(&shared, &retry),
            codedeploy: clients::codedeploy(&shared, &retry),
            function: h.check_function.clone().filter(|f| !f.trim().is_empty()),
            checks: h.checks_object.clone(),
            // Without the key every check gets 401, and the hook reports Failed.
            api_key: crate::host::secret_key::key_text(settings)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "no API key for the checks");
                    None
                }),
            tolerance: h.check_tolerance,
            budget: Duration::from_secs_f64(h.check_timeout_s),
        }
    }

    async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let ids: LifecycleEvent = serde_json::from_value(event.payload).map_err(|e| {
            // Nothing can be reported without the ids: the invoke fails instead.
            tracing::error!(error = %e, "not a CodeDeploy lifecycle hook event");
            Diagnostic {
                error_type: "catdog.NotALifecycleEvent".into(),
                error_message: format!(
                    "expected {{\"DeploymentId\", \"LifecycleEventHookExecutionId\"}}: {e}"
                ),
            }
        })?;
        let budget = budget(self.budget, event.context.deadline(), SystemTime::now());
        let outcome = self.checked(budget).await;
        let problems = match &outcome {
            Ok(v) if v.passed() => Vec::new(),
            Ok(v) if v.problems.is_empty() => vec!["no picture was answered".into()],
            Ok(v) => v.problems.clone(),
            Err(e) => vec![e.to_string()],
        };
        let pictures = outcome.as_ref().map_or(0, |v| v.pictures);
        let status = if problems.is_empty() {
            tracing::info!(deployment = %ids.deployment_id, pictures, "the new version answered as recorded");
            LifecycleEventStatus::Succeeded
        } else {
            tracing::error!(
                deployment = %ids.deployment_id,
                pictures,
                problems = %problems.join(" | "),
                "the new version failed its checks"
            );
            LifecycleEventStatus::Failed
        };
        self.report(&ids, &status).await?;
        Ok(json!({"status": status.as_str(), "pictures": pictures, "problems": problems}))
    }

    /// The checks within `budget`, on a task of their own so that a panic
    /// is a verdict too.
    async fn checked(&self, budget: Duration) -> Result<Verdict, NoVerdict> {
        let function = self.function.clone().ok_or(NoVerdict::NoFunction)?;
        let (bucket, key) = self.checks.clone().ok_or(NoVerdict::NoChecksObject)?;
        let target = Target {
            lambda: self.lambda.clone(),
            function,
            api_key: self.api_key.clone(),
        };
        let store = self.store.clone();
        let tolerance = self.tolerance;
        let mut task =
            tokio::spawn(
                async move { verify::verify(&store, &target, &bucket, &key, tolerance).await },
            );
        match tokio::time::timeout(budget, &mut task).await {
            Err(_) => {
                task.abort();
                Err(NoVerdict::OutOfTime(budget))
            }
            Ok(Err(stopped)) => Err(NoVerdict::Stopped(stopped.to_string())),
            Ok(Ok(result)) => result.map_err(NoVerdict::Checks),
        }
    }

    /// Tells CodeDeploy; a report that cannot be made fails the invoke (Lambda's
    /// asynchronous retry then runs the hook again).
    async fn report(
        &self,
        ids: &LifecycleEvent,
        status: &LifecycleEventStatus,
    ) -> Result<(), Diagnostic> {
        let said = status.as_str();
        self.codedeploy
            .put_lifecycle_event_hook_execution_status()
            .deployment_id(&ids.deployment_id)
            .lifecycle_event_hook_execution_id(&ids.execution_id)
            .status(status.clone())
            .send()
            .await
            .map(|_| tracing::info!(deployment = %ids.deployment_id, status = said, "reported to CodeDeploy"))
            .map_err(|e| {
                let message = crate::messages::with_causes(&e);
                tracing::error!(deployment = %ids.deployment_id, status = said, error = %message, "could not report to CodeDeploy");
                Diagnostic {
                    error_type: "catdog.ReportFailed".into(),
                    error_message: format!("reporting {said} to CodeDeploy: {message}"),
                }
            })
    }
}

/// The time the checks may take: the setting, cut short so the outcome can
/// still be reported before the invoke's `deadline`. A deadline already
/// passed means nothing to go by (cargo-lambda's emulator gives one in 1970).
fn budget(setting: Duration, deadline: SystemTime, now: SystemTime) -> Duration {
    match deadline.duration_since(now) {
        Ok(left) if left > REPORT_RESERVE => setting.min(left - REPORT_RESERVE),
        Ok(left) => setting.min(left / 2),
        Err(_) => setting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_time_to_report() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let setting = Duration::from_secs(240);
        assert_eq!(
            budget(setting, now + Duration::from_secs(300), now),
            setting
        );
        assert_eq!(
            budget(setting, now + Duration::from_secs(100), now),
            Duration::from_secs(80)
        );
        assert_eq!(
            budget(setting, now + Duration::from_secs(10), now),
            Duration::from_secs(5)
        );
        assert_eq!(budget(setting, now - Duration::from_secs(5), now), setting);
    }

    #[test]
    fn the_lifecycle_event_is_codedeploys() {
        let e: LifecycleEvent = serde_json::from_value(json!({
            "DeploymentId": "d-ABC123", "LifecycleEventHookExecutionId": "exec-1"
        }))
        .unwrap();
        assert_eq!(e.deployment_id, "d-ABC123");
        assert_eq!(e.execution_id, "exec-1");
        assert!(serde_json::from_value::<LifecycleEvent>(json!({"DeploymentId": "d"})).is_err());
    }
}
