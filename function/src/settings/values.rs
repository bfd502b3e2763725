//! The parsers that check each flag's value; their message names what to change.

use crate::http::access;
use crate::model::contract;
use crate::model::source;
use crate::preprocess::Preprocessing;

use super::*;

/// A flag's value refused, saying what to change (clap shows it after the
/// flag's name).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub(crate) String);

impl From<String> for InvalidValue {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for InvalidValue {
    fn from(message: &str) -> Self {
        Self(message.to_string())
    }
}

/// Any refusal, as its message.
fn invalid(e: impl std::fmt::Display) -> InvalidValue {
    InvalidValue(e.to_string())
}

pub(super) fn parse_model_uri(s: &str) -> Result<String, InvalidValue> {
    s.parse::<source::ModelUri>().map_err(invalid)?;
    Ok(s.trim().to_string())
}

pub(super) fn parse_sha256(s: &str) -> Result<String, InvalidValue> {
    source::normalize_sha256(s).map_err(invalid)
}

pub(super) fn parse_labels(s: &str) -> Result<Labels, InvalidValue> {
    contract::parse_labels(s).map(Labels).map_err(invalid)
}

/// One label: a non-empty name (as in `labels`).
pub(super) fn parse_label(s: &str) -> Result<String, InvalidValue> {
    contract::parse_labels(&serde_json::json!([s.trim()]).to_string())
        .map(|mut l| l.remove(0))
        .map_err(invalid)
}

pub(super) fn parse_model_name(s: &str) -> Result<String, InvalidValue> {
    crate::model::contract::parse_name(s).map_err(|e| InvalidValue(format!("MODEL_NAME: {e}")))
}

pub(super) fn parse_preprocessing(s: &str) -> Result<Preprocessing, InvalidValue> {
    s.parse::<Preprocessing>().map_err(invalid)
}

/// A number within `range`; `what` names it in the refusal.
pub(super) fn number_in<T>(
    s: &str,
    range: impl std::ops::RangeBounds<T>,
    what: &str,
) -> Result<T, InvalidValue>
where
    T: std::str::FromStr + PartialOrd,
{
    match s.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(InvalidValue(format!("{s:?} is not {what}"))),
    }
}

/// `auto`, or bytes with an optional unit: `536870912`, `512MiB`, `1GiB`, `600MB`.
pub(super) fn parse_memory_budget(s: &str) -> Result<MemoryBudgetSetting, InvalidValue> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(MemoryBudgetSetting::Auto);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => 0,
    };
    match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(scale)) {
        Some(bytes) if bytes >= 1 << 20 => Ok(MemoryBudgetSetting::Bytes(bytes)),
        _ => Err(InvalidValue(format!(
            "{s:?} is not a memory budget: give `auto` or a size of at least 1 MiB, e.g. `512MiB`, `1GiB`"
        ))),
    }
}

pub(super) fn parse_probability(s: &str) -> Result<f32, InvalidValue> {
    number_in(s, 0.0..=1.0, "a probability between 0 and 1")
}

pub(super) fn parse_tolerance(s: &str) -> Result<f64, InvalidValue> {
    number_in(s, 0.0..=1.0, "a score difference between 0 and 1")
}

pub(super) fn parse_fraction(s: &str) -> Result<f64, InvalidValue> {
    number_in(s, 0.0..=1.0, "a fraction between 0 and 1")
}

pub(super) fn parse_timeout_s(s: &str) -> Result<f64, InvalidValue> {
    number_in(
        s,
        f64::MIN_POSITIVE..=3600.0,
        "a number of seconds between 0 and 3600",
    )
}

pub(super) fn parse_url(s: &str) -> Result<String, InvalidValue> {
    match reqwest::Url::parse(s.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(s.trim().to_string()),
        _ => Err(InvalidValue(format!("{s:?} is not an http(s) URL"))),
    }
}

pub(super) fn parse_secret(s: &str) -> Result<Secret, InvalidValue> {
    Ok(Secret(s.trim().to_string()))
}

pub(super) fn parse_api_key(s: &str) -> Result<Secret, InvalidValue> {
    access::check_key(s).map_err(invalid)?;
    Ok(Secret(s.trim().to_string()))
}

pub(super) fn parse_origin(s: &str) -> Result<String, InvalidValue> {
    access::check_origin(s).map_err(invalid)?;
    Ok(s.trim().to_string())
}

/// Parses a `user:password` credential (ngrok wants 8–128 character passwords).
pub fn parse_basic_auth(s: &str) -> Result<BasicAuth, InvalidValue> {
    let (user, pass) = s
        .trim()
        .split_once(':')
        .ok_or("basic auth must be user:password")?;
    if user.is_empty() || !(8..=128).contains(&pass.len()) {
        return Err("basic auth needs a user and a password of 8 to 128 characters".into());
    }
    Ok(BasicAuth {
        user: user.to_string(),
        password: Secret(pass.to_string()),
    })
}

/// Checks a CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
pub fn parse_cidr(cidr: &str) -> Result<String, InvalidValue> {
    let cidr = cidr.trim();
    let (addr, bits) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} is not a CIDR"))?;
    let ip: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{cidr:?} is not a CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits.parse::<u8>().ok().filter(|b| *b <= max).is_none() {
        return Err(InvalidValue(format!("{cidr:?} has a bad prefix length")));
    }
    Ok(cidr.to_string())
}

pub(super) fn parse_results(s: &str) -> Result<ResultsWanted, InvalidValue> {
    let mut wanted = ResultsWanted {
        tags: false,
        record: false,
    };
    if s.trim() == "none" {
        return Ok(wanted);
    }
    for part in s.split(',').map(str::trim) {
        match part {
            "tags" => wanted.tags = true,
            "record" => wanted.record = true,
            other => {
                return Err(InvalidValue(format!(
                    "{other:?}: expected `tags`, `record`, `tags,record` or `none`"
                )))
            }
        }
    }
    Ok(wanted)
}

pub(super) fn parse_results_prefix(s: &str) -> Result<String, InvalidValue> {
    let p = s.trim().trim_start_matches('/');
    if p.is_empty() {
        return Err(
            "an empty prefix would make every key a result: name a folder, e.g. catdog-results/"
                .into(),
        );
    }
    Ok(crate::objects::ResultsConfig::normalise_prefix(p))
}

/// An S3 bucket name as S3 allows it (3–63 lowercase letters, digits, dots
/// and hyphens, starting and ending with a letter or digit).
pub(super) fn parse_bucket(s: &str) -> Result<String, InvalidValue> {
    let b = s.trim();
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(b.to_string())
    } else {
        Err(InvalidValue(format!(
            "{b:?} is not an S3 bucket name (3–63 lowercase letters, digits, dots and hyphens)"
        )))
    }
}

/// `s3://bucket/prefix/`: the uploads' bucket and key prefix (ending in `/`,
/// or empty for the whole bucket).
pub(super) fn parse_uploads(s: &str) -> Result<(String, String), InvalidValue> {
    let rest = s
        .trim()
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{s:?} is not s3://bucket/prefix/"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket = parse_bucket(bucket)?;
    let prefix = prefix.trim_start_matches('/');
    // A prefix is also a folder name (a `--data` prefix's mirror): never
    // one that climbs out of it.
    if crate::objects::location::has_dot_segments(prefix) || prefix.contains('\\') {
        return Err(InvalidValue(format!(
            "{s:?}: a prefix with `.` or `..` segments (or a backslash) is not taken"
        )));
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket, prefix))
}

/// `CATDOG_FEEDBACK` or a `--data` source: `s3://bucket/prefix/` (as
/// [`parse_uploads`]) or a folder.
pub(super) fn parse_feedback(s: &str) -> Result<crate::feedback::Destination, InvalidValue> {
    use crate::feedback::Destination;
    let s = s.trim();
    if s.starts_with("s3://") {
        let (bucket, prefix) = parse_uploads(s)?;
        return Ok(Destination::S3 { bucket, prefix });
    }
    if s.is_empty() || s.contains("://") {
        return Err(InvalidValue(format!(
            "{s:?} is neither s3://bucket/prefix/ nor a folder"
        )));
    }
    Ok(Destination::Folder(std::path::PathBuf::from(s)))
}

/// `--neither-fence`: interquartile ranges, 0–10.
pub(super) fn parse_fence(s: &str) -> Result<f64, InvalidValue> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(InvalidValue(format!(
            "{s:?} is not a number of interquartile ranges from 0 to 10"
        ))),
    }
}

/// `s3://bucket/key.checks.json`: where the PreTraffic hook reads the
/// recorded answers (bucket, key).
pub(super) fn parse_checks_uri(s: &str) -> Result<(String, String), InvalidValue> {
    let rest = s
        .trim()
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{s:?} is not s3://bucket/<model key>.checks.json"))?;
    let (bucket, key) = rest
        .split_once('/')
        .filter(|(_, k)| k.ends_with(crate::checks::ANSWERS_SUFFIX))
        .ok_or_else(|| format!("{s:?} is not s3://bucket/<model key>.checks.json"))?;
    Ok((parse_bucket(bucket)?, key.to_string()))
}

/// `CATDOG_PREPACK`: `true` (at load), `later` (in the background, once
/// serving), `false` (never).
pub(super) fn parse_prepack(s: &str) -> Result<crate::model::session::Prepack, InvalidValue> {
    use crate::model::session::Prepack;
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "now" => Ok(Prepack::Now),
        "later" => Ok(Prepack::Later),
        "false" | "off" => Ok(Prepack::Off),
        other => Err(InvalidValue(format!(
            "CATDOG_PREPACK: {other:?} is none of true (at load), later (once serving), false"
        ))),
    }
}
