//! Deploy checks: known pictures and the answers a model gave them, kept in
//! S3 next to the model. `catdog upload --checks` records them on the
//! uploader's machine; the CodeDeploy PreTraffic hook
//! (`host/pretraffic`) has a new function version answer the same pictures
//! before any traffic reaches it, and compares.
//!
//! - [`layout`]: the answers file and where everything lives;
//! - [`record`]: answering the pictures with the model, locally;
//! - [`compare`]: one new answer against its recorded one;
//! - [`event`]: a picture as the Function URL event the hook invokes with,
//!   and the answer out of the invoke's payload;
//! - [`persist`]: writing them to S3 and reading them back.

pub(crate) mod compare;
pub(crate) mod event;
pub(crate) mod layout;
pub(crate) mod persist;
pub(crate) mod record;

pub(crate) use compare::{compare, Answer};
pub(crate) use layout::{Expected, ANSWERS_SUFFIX};
pub(crate) use record::Recorded;

/// The default of `CATDOG_CHECK_TOLERANCE`: answers are recorded on one CPU
/// and checked on Lambda's. An fp32 model's scores differ there by ~1e-6 (other
/// SIMD kernels, another summation order); an int8 model's by up to a few
/// hundredths (its integer kernels differ with and without AVX-512 VNNI, and
/// on Graviton). A wrong model, wrong labels or wrong preprocessing moves
/// scores by tenths, and labels too.
pub const DEFAULT_TOLERANCE: f64 = 0.05;

/// The default of `CATDOG_CHECK_TIMEOUT_S`: a few seconds per picture at
/// most, a cold start of a large model included, and still under the hook's
/// 300 s Timeout (template.yaml), so the outcome is reported in time.
pub const DEFAULT_TIMEOUT_S: f64 = 240.0;

/// Why checks could not be recorded, stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ChecksError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("{file}: {reason}")]
    Picture { file: String, reason: String },
    #[error("{0} pictures: at most {max} (each is one invoke of the new version before it gets traffic)", max = record::MAX_PICTURES)]
    TooMany(usize),
    #[error("writing {uri}: {message}")]
    Put { uri: String, message: String },
    #[error("reading {uri}: {code}: {reason}")]
    Read {
        uri: String,
        /// The S3 failure's code (`no_such_key`, `access_denied`, …).
        code: String,
        reason: String,
    },
    #[error("{uri} is not a checks file: {reason}")]
    Invalid { uri: String, reason: String },
}
