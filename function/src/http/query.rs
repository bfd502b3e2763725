//! The query parameters of the classifying routes, read strictly: a
//! parameter the route does not take, or a value it cannot read, is a 400
//! (`invalid_query`) that names it, never silently ignored.

use percent_encoding::percent_decode_str;

use crate::error::{ApiError, ErrorCode};

/// `POST /predict`'s query.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PredictQuery {
    /// `true`: each answer carries `explanation` (why: a grid over the
    /// picture and an overlay PNG); `false`, the default: it does not.
    pub(crate) explain: Option<bool>,
}

impl PredictQuery {
    /// Reads `query` (the URI's, without `?`).
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut out = Self::default();
        for (key, value) in pairs(query)? {
            match key.as_str() {
                "explain" => out.explain = Some(boolean(&key, &value)?),
                other => return Err(unknown(other, "`explain`")),
            }
        }
        Ok(out)
    }

    pub(crate) fn explain(self) -> bool {
        self.explain.unwrap_or(false)
    }
}

/// `POST /feedback`'s query.
#[derive(Debug, Clone, PartialEq, Eq, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedbackQuery {
    /// The label that is right for the picture: one of the model's
    /// (`GET /model`'s `labels`, e.g. `cat`, `dog`, `neither`).
    pub(crate) label: String,
}

impl FeedbackQuery {
    /// Reads `query` (the URI's, without `?`): `label`, once.
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut label = None;
        for (key, value) in pairs(query)? {
            match key.as_str() {
                "label" if label.is_none() => label = Some(value),
                "label" => return Err(invalid("`label` is given twice: give it once".into())),
                other => return Err(unknown(other, "`label`")),
            }
        }
        let label = label.ok_or_else(|| {
            invalid("`label` is missing: say which label is right, e.g. ?label=dog".into())
        })?;
        Ok(Self { label })
    }
}

/// The query's `key=value` pairs, percent-decoded.
fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decoded(key)?, decoded(value)?))
        })
        .collect()
}

fn unknown(key: &str, takes: &str) -> ApiError {
    invalid(format!(
        "unknown query parameter `{}`: this route takes {takes}",
        key.chars().take(64).collect::<String>()
    ))
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

fn decoded(text: &str) -> Result<String, ApiError> {
    let plus_as_space = text.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("a query parameter is not UTF-8 once percent-decoded".into()))
}

fn boolean(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid(format!(
            "`{key}` is `true` or `false`, not `{}`",
            other.chars().take(64).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_is_read_and_anything_else_is_refused() {
        let explain = |q| PredictQuery::parse(Some(q)).map(PredictQuery::explain);
        assert!(!PredictQuery::parse(None).unwrap().explain());
        assert!(explain("explain=true").unwrap());
        assert!(!explain("explain=false").unwrap());
        // The schema's boolean, spelled as JSON spells it, and nothing else.
        for other in ["explain", "explain=1", "explain=True", "explain=yes"] {
            assert!(explain(other).is_err(), "{other}");
        }
        let refused = explain("explain=maybe").unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidQuery);
        assert!(refused.message.contains("maybe"), "{}", refused.message);
        let typo = explain("explian=true").unwrap_err();
        assert!(typo.message.contains("explian"), "{}", typo.message);
    }

    #[test]
    fn feedback_takes_one_label() {
        let parse = |q| FeedbackQuery::parse(q).map(|f| f.label);
        assert_eq!(parse(Some("label=dog")).unwrap(), "dog");
        assert_eq!(parse(Some("label=n%C3%A9")).unwrap(), "né");
        for bad in [
            None,
            Some(""),
            Some("label=a&label=b"),
            Some("label=dog&explain=true"),
        ] {
            let refused = parse(bad).unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidQuery, "{bad:?}");
        }
    }
}
