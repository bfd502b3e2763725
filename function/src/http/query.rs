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
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decoded(key)?;
            let value = decoded(value)?;
            match key.as_str() {
                "explain" => out.explain = Some(boolean(&key, &value)?),
                other => {
                    return Err(invalid(format!(
                        "unknown query parameter `{}`: this route takes `explain`",
                        other.chars().take(64).collect::<String>()
                    )))
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn explain(self) -> bool {
        self.explain.unwrap_or(false)
    }
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
}
