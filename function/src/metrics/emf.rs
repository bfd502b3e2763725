//! CloudWatch Embedded Metric Format: on Lambda `/metrics` shows one
//! instance of many, so each request's figures are also written to stdout
//! as one JSON line that CloudWatch Logs turns into metrics (one line per
//! request, and one when the model is ready). The shape follows the EMF
//! specification: an `_aws` member with `Timestamp` and `CloudWatchMetrics`
//! directives, whose dimension and metric names are members of the line.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::metrics::{ModelLabels, Observed};

/// The CloudWatch namespace of every catdog metric.
pub(crate) const NAMESPACE: &str = "catdog";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One EMF document: `metrics` are (name, unit, value), `dimensions` are
/// (name, value) and form the directive's one dimension set; `properties`
/// ride along unindexed.
fn document(
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, f64)],
    properties: &[(&str, Value)],
    timestamp_ms: u64,
) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), Value::from(*v));
    }
    for (k, _, v) in metrics {
        // EMF values must be numbers: a NaN would make the line invalid JSON.
        root.insert((*k).into(), json!(if v.is_finite() { *v } else { 0.0 }));
    }
    for (k, v) in properties {
        root.insert((*k).into(), v.clone());
    }
    Value::Object(root).to_string()
}

/// The line for one request.
pub(crate) fn request_line(o: &Observed, model: Option<&ModelLabels>, timestamp_ms: u64) -> String {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut metrics = vec![
        ("Requests", "Count", 1.0),
        (
            "ClientErrors",
            "Count",
            flag((400..500).contains(&o.status)),
        ),
        ("ServerErrors", "Count", flag(o.status >= 500)),
        ("Duration", "Milliseconds", o.total_ms),
    ];
    if let Some(s) = &o.stages {
        metrics.extend([
            ("ReadTime", "Milliseconds", s.read),
            ("QueueTime", "Milliseconds", s.queue),
            ("DecodeTime", "Milliseconds", s.decode),
            ("PreprocessTime", "Milliseconds", s.preprocess),
            ("InferenceTime", "Milliseconds", s.inference),
            ("Images", "Count", s.images as f64),
            ("BatchSize", "Count", s.batch as f64),
        ]);
    }
    let mut properties = vec![
        ("Method", Value::from(o.method)),
        ("Status", Value::from(o.status)),
    ];
    if let Some(m) = model {
        properties.push(("Model", Value::from(m.name.as_str())));
        properties.push(("ModelVersion", Value::from(m.version.as_str())));
    }
    document(&[("Route", o.route)], &metrics, &properties, timestamp_ms)
}

/// The line written once the model is ready: its fetch and load times.
pub(crate) fn model_line(
    model: &ModelLabels,
    fetch_ms: f64,
    load_ms: f64,
    timestamp_ms: u64,
) -> String {
    document(
        &[("Model", &model.name)],
        &[
            ("ModelFetchTime", "Milliseconds", fetch_ms),
            ("ModelLoadTime", "Milliseconds", load_ms),
        ],
        &[
            ("ModelVersion", Value::from(model.version.as_str())),
            ("ModelSha256", Value::from(model.sha256.as_str())),
            ("ModelUriScheme", Value::from(model.uri_scheme.as_str())),
        ],
        timestamp_ms,
    )
}

/// The line for one correction (`POST /feedback`): counted by the model's
/// answer and the label given, so CloudWatch holds the same confusion
/// matrix as `/metrics`.
pub(crate) fn correction_line(
    answered: &str,
    corrected: &str,
    model: Option<&ModelLabels>,
    timestamp_ms: u64,
) -> String {
    let mut properties = Vec::new();
    if let Some(m) = model {
        properties.push(("Model", Value::from(m.name.as_str())));
        properties.push(("ModelVersion", Value::from(m.version.as_str())));
    }
    document(
        &[("Answered", answered), ("Corrected", corrected)],
        &[("Corrections", "Count", 1.0)],
        &properties,
        timestamp_ms,
    )
}

/// [`correction_line`] at the current time, written out.
pub(crate) fn emit_correction(answered: &str, corrected: &str, model: Option<&ModelLabels>) {
    emit(&correction_line(answered, corrected, model, now_ms()));
}

/// Writes a line to stdout in one piece (Lambda sends stdout to CloudWatch
/// Logs, one event per line; the tracing logs go to stderr).
pub(crate) fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// [`request_line`] at the current time, written out.
pub(crate) fn emit_request(o: &Observed, model: Option<&ModelLabels>) {
    emit(&request_line(o, model, now_ms()));
}

/// [`model_line`] at the current time, written out.
pub(crate) fn emit_model(model: &ModelLabels, fetch_ms: f64, load_ms: f64) {
    emit(&model_line(model, fetch_ms, load_ms, now_ms()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Timings;

    #[test]
    fn every_named_dimension_and_metric_is_a_member_of_the_line() {
        let o = Observed {
            route: "/predict",
            method: "POST",
            status: 200,
            total_ms: 10.5,
            stages: Some(Timings {
                inference: 7.0,
                images: 2,
                batch: 3,
                ..Default::default()
            }),
        };
        let v: Value = serde_json::from_str(&request_line(&o, None, 1_700_000_000_000)).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        for set in directive["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(v[d.as_str().unwrap()].is_string(), "{d}");
            }
        }
        for m in directive["Metrics"].as_array().unwrap() {
            assert!(v[m["Name"].as_str().unwrap()].is_number(), "{m}");
        }
        assert_eq!(v["BatchSize"], 3.0);
        assert_eq!(v["Route"], "/predict");
    }

    #[test]
    fn a_correction_is_counted_by_answer_and_label() {
        let v: Value = serde_json::from_str(&correction_line("cat", "dog", None, 1)).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            directive["Dimensions"][0],
            serde_json::json!(["Answered", "Corrected"])
        );
        assert_eq!(directive["Metrics"][0]["Name"], "Corrections");
        assert_eq!(
            (&v["Answered"], &v["Corrected"], &v["Corrections"]),
            (&"cat".into(), &"dog".into(), &1.0.into())
        );
    }
}
