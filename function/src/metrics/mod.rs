//! What the server counts and times, for `GET /metrics` (Prometheus text
//! format, from the `prometheus-client` crate) and, where one instance's
//! counters add up to nothing (Lambda), as CloudWatch Embedded Metric
//! Format lines ([`emf`]). Both are fed from one [`Observed`] per request, so
//! the two cannot disagree.
//!
//! Each router has its own registry (no global): two servers in one process
//! (tests, a notebook re-run) count apart.

pub(crate) mod emf;

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of `GET /metrics` (Prometheus text format 0.0.4).
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The route label of requests no route matched (their paths are not
/// labels: anyone could grow the series without bound).
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";

/// One request, as both sinks see it.
#[derive(Debug, Clone)]
pub(crate) struct Observed<'a> {
    /// The route's template (`/v2/models/{name}/infer`), or [`UNMATCHED_ROUTE`].
    pub(crate) route: &'a str,
    pub(crate) method: &'a str,
    pub(crate) status: u16,
    pub(crate) total_ms: f64,
    /// For requests that classified pictures.
    pub(crate) stages: Option<Timings>,
}

/// Where a classifying request's time went, in milliseconds: answered as
/// `timings_ms`, logged, and observed here.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Timings {
    pub(crate) read: f64,
    /// Waiting for the memory budget before decoding (behind other large pictures).
    pub(crate) memory_wait: f64,
    pub(crate) decode: f64,
    pub(crate) preprocess: f64,
    pub(crate) inference: f64,
    /// Waiting for the inference thread (behind other batches).
    pub(crate) queue: f64,
    pub(crate) total: f64,
    /// Pictures in the request.
    #[serde(skip)]
    pub(crate) images: usize,
    /// Pictures in the micro-batch this request ran in (its own included).
    #[serde(rename = "batch_images")]
    pub(crate) batch: usize,
}

/// The model answering, for the info series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ModelLabels {
    pub(crate) name: String,
    /// Empty while the digest is being computed.
    pub(crate) version: String,
    pub(crate) sha256: String,
    /// `s3`, `https` or `file`.
    pub(crate) uri_scheme: String,
    /// `labels` or `imagenet`.
    pub(crate) kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

/// A correction: what the model answered, and the label a person gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CorrectionLabels {
    answered: String,
    corrected: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type SecondsByRoute = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// 0.5 ms to ~16 s, doubling: a tiny model's preprocessing to a cold VGG16 batch.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every series `/metrics` shows.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    in_flight: Gauge,
    duration: SecondsByRoute,
    read: SecondsByRoute,
    queue: SecondsByRoute,
    memory_wait: SecondsByRoute,
    decode: SecondsByRoute,
    preprocess: SecondsByRoute,
    inference: SecondsByRoute,
    batch_size: Histogram,
    model_fetch: Gauge<f64, AtomicU64>,
    model_load: Gauge<f64, AtomicU64>,
    memory_budget: Gauge,
    memory_in_use: Gauge,
    model_info: Family<ModelLabels, Gauge>,
    corrections: Family<CorrectionLabels, Counter>,
    /// The info series is replaced as a whole (the digest may arrive late).
    model_now: Mutex<Option<ModelLabels>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("catdog");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route template, method and status",
            requests.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being answered now",
            in_flight.clone(),
        );
        let by_route = || SecondsByRoute::new_with_constructor(seconds_histogram);
        let duration = by_route();
        registry.register_with_unit(
            "request_duration",
            "Whole request, from the first byte read to the answer (all routes)",
            Unit::Seconds,
            duration.clone(),
        );
        let stage = |registry: &mut Registry, name: &str, help: &str| {
            let h = by_route();
            registry.register_with_unit(name, help, Unit::Seconds, h.clone());
            h
        };
        let read = stage(
            &mut registry,
            "read",
            "Reading the request body (classifying routes)",
        );
        let queue = stage(
            &mut registry,
            "queue",
            "Waiting for the inference thread, behind other batches",
        );
        let memory_wait = stage(
            &mut registry,
            "memory_wait",
            "Waiting for the memory budget before decoding, behind other large pictures",
        );
        let decode = stage(&mut registry, "decode", "Decoding the pictures");
        let preprocess = stage(
            &mut registry,
            "preprocess",
            "Resizing and normalising into the model's input tensor",
        );
        let inference = stage(&mut registry, "inference", "ONNX Runtime's run");
        let batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]);
        registry.register(
            "batch_size",
            "Pictures per model run (micro-batching joins requests)",
            batch_size.clone(),
        );
        let model_fetch = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "model_fetch",
            "Fetching the model (S3, https, or opening the file)",
            Unit::Seconds,
            model_fetch.clone(),
        );
        let model_load = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "model_load",
            "Building the ONNX Runtime session and warming it up",
            Unit::Seconds,
            model_load.clone(),
        );
        let memory_budget = Gauge::default();
        registry.register_with_unit(
            "memory_budget",
            "Most bytes of decoded pictures in flight at once (CATDOG_MEMORY_BUDGET, or decided at start)",
            Unit::Bytes,
            memory_budget.clone(),
        );
        let memory_in_use = Gauge::default();
        registry.register_with_unit(
            "memory_in_use",
            "Bytes of the memory budget held by pictures being decoded now",
            Unit::Bytes,
            memory_in_use.clone(),
        );
        let model_info = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "model_info",
            "The model answering (1): name, version, SHA-256, URI scheme, kind",
            model_info.clone(),
        );
        let corrections = Family::<CorrectionLabels, Counter>::default();
        registry.register(
            "corrections",
            "Corrections people sent (POST /feedback), by the model's answer and the label they gave: a live confusion matrix",
            corrections.clone(),
        );
        Self {
            registry,
            requests,
            in_flight,
            duration,
            read,
            queue,
            memory_wait,
            decode,
            preprocess,
            inference,
            batch_size,
            model_fetch,
            model_load,
            memory_budget,
            memory_in_use,
            model_info,
            corrections,
            model_now: Mutex::new(None),
        }
    }

    /// A request starts; the returned guard counts it in flight until dropped
    /// (also when the client goes away mid-request).
    pub(crate) fn start_request(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// A request was answered.
    pub(crate) fn observe(&self, o: &Observed) {
        self.requests
            .get_or_create(&RequestLabels {
                route: o.route.to_string(),
                method: o.method.to_string(),
                status: o.status,
            })
            .inc();
        let route = RouteLabels {
            route: o.route.to_string(),
        };
        self.duration
            .get_or_create(&route)
            .observe(o.total_ms / 1e3);
        if let Some(s) = &o.stages {
            for (family, ms) in [
                (&self.read, s.read),
                (&self.queue, s.queue),
                (&self.memory_wait, s.memory_wait),
                (&self.decode, s.decode),
                (&self.preprocess, s.preprocess),
                (&self.inference, s.inference),
            ] {
                family.get_or_create(&route).observe(ms / 1e3);
            }
        }
    }

    /// A person said a picture answered `answered` is `corrected`. Both
    /// are the model's labels, so the series stay few.
    pub(crate) fn corrected(&self, answered: &str, corrected: &str) {
        self.corrections
            .get_or_create(&CorrectionLabels {
                answered: answered.to_string(),
                corrected: corrected.to_string(),
            })
            .inc();
    }

    /// The histogram the inference thread reports each run's size to.
    pub(crate) fn batch_size(&self) -> Histogram {
        self.batch_size.clone()
    }

    /// The model is ready: its fetch and load times.
    pub(crate) fn model_loaded(&self, fetch_ms: f64, load_ms: f64) {
        self.model_fetch.set(fetch_ms / 1e3);
        self.model_load.set(load_ms / 1e3);
    }

    /// The memory budget and how much of it is held now (set when `/metrics` is read).
    pub(crate) fn set_memory(&self, budget: u64, in_use: u64) {
        self.memory_budget
            .set(i64::try_from(budget).unwrap_or(i64::MAX));
        self.memory_in_use
            .set(i64::try_from(in_use).unwrap_or(i64::MAX));
    }

    /// Sets the info series to `model` (or none), replacing the previous one.
    pub(crate) fn set_model(&self, model: Option<ModelLabels>) {
        let mut now = self.model_now.lock().unwrap_or_else(|p| p.into_inner());
        if *now == model {
            return;
        }
        if let Some(old) = now.take() {
            self.model_info.remove(&old);
        }
        if let Some(m) = &model {
            self.model_info.get_or_create(m).set(1);
        }
        *now = model;
    }

    /// The Prometheus text exposition of every series.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts one request in flight while alive.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A request method as a label: the standard ones by name, any other as
/// `other` (a client inventing methods must not grow the series).
pub(crate) fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

/// `s3`, `https`, `http` or `file`: a URI's scheme, without anything that
/// could identify the bucket or host.
pub(crate) fn uri_scheme(uri: &str) -> &'static str {
    match uri.split_once("://").map(|(s, _)| s) {
        Some("s3") => "s3",
        Some("https") => "https",
        Some("http") => "http",
        _ => "file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_moves_its_counter_and_its_histograms() {
        let m = Metrics::new();
        let guard = m.start_request();
        assert!(m.encode().contains("catdog_requests_in_flight 1\n"));
        drop(guard);
        m.observe(&Observed {
            route: "/predict",
            method: "POST",
            status: 200,
            total_ms: 12.0,
            stages: Some(Timings {
                inference: 7.0,
                images: 1,
                batch: 1,
                ..Default::default()
            }),
        });
        let text = m.encode();
        assert!(text.contains("catdog_requests_in_flight 0\n"), "{text}");
        assert!(
            text.contains(
                r#"catdog_requests_total{route="/predict",method="POST",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"catdog_inference_seconds_sum{route="/predict"} 0.007"#),
            "{text}"
        );
    }

    #[test]
    fn the_info_series_is_replaced_not_added_to() {
        let m = Metrics::new();
        let model = |version: &str| ModelLabels {
            name: "catdog".into(),
            version: version.into(),
            sha256: String::new(),
            uri_scheme: "file".into(),
            kind: "labels".into(),
        };
        m.set_model(Some(model("")));
        m.set_model(Some(model("0123456789ab")));
        let text = m.encode();
        assert_eq!(text.matches("catdog_model_info{").count(), 1, "{text}");
        assert!(text.contains(r#"version="0123456789ab""#), "{text}");
        assert_eq!(uri_scheme("s3://bucket/key"), "s3");
        assert_eq!(uri_scheme("model.onnx"), "file");
        assert_eq!(method_label("BREW"), "other");
    }
}
