//! Which answers are written back, and where: the object's tags
//! (`catdog-label`, `catdog-confidence`, `catdog-model`, merged with the
//! tags it has) and a JSON record at `<prefix><key>.json`. Keys under the
//! prefix are catdog's own results, never classified (so a bucket whose
//! uploads trigger catdog cannot loop on its records).

/// The tag keys catdog writes (and replaces, leaving the object's others).
pub(crate) const TAG_LABEL: &str = "catdog-label";
pub(crate) const TAG_CONFIDENCE: &str = "catdog-confidence";
pub(crate) const TAG_MODEL: &str = "catdog-model";
/// S3 allows at most this many tags on an object.
pub(crate) const S3_MAX_TAGS: usize = 10;
/// The results prefix unless set (`CATDOG_RESULTS_PREFIX`).
pub(crate) const DEFAULT_PREFIX: &str = "catdog-results/";

/// What is written for each classified object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResultsConfig {
    /// Tag the object itself.
    pub(crate) tags: bool,
    /// Write the JSON record (also what makes a repeated event cheap: a
    /// record for the same object version and model is answered from).
    pub(crate) record: bool,
    /// Where records go, ending in `/`; keys under it are never classified.
    pub(crate) prefix: String,
    /// The bucket records go to [default: the object's own].
    pub(crate) bucket: Option<String>,
}

impl Default for ResultsConfig {
    fn default() -> Self {
        Self {
            tags: true,
            record: true,
            prefix: DEFAULT_PREFIX.into(),
            bucket: None,
        }
    }
}

impl ResultsConfig {
    /// A prefix as given, made to end in `/` (an empty one is refused by
    /// the settings: every key would be a result).
    pub(crate) fn normalise_prefix(prefix: &str) -> String {
        let p = prefix.trim_start_matches('/');
        if p.ends_with('/') {
            p.to_string()
        } else {
            format!("{p}/")
        }
    }

    /// Whether `key` is one of catdog's records (never classified).
    pub(crate) fn is_result_key(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }

    /// Where the record of `bucket`/`key` is written: beside it in its own
    /// bucket (`<prefix><key>.json`), or in the results bucket, where the
    /// object's bucket is part of the key (`<prefix><bucket>/<key>.json`), so
    /// that two buckets' `x.jpg` never share (and reuse) one record.
    pub(crate) fn record_location(&self, bucket: &str, key: &str) -> (String, String) {
        match &self.bucket {
            Some(results) => (
                results.clone(),
                format!("{}{bucket}/{key}.json", self.prefix),
            ),
            None => (bucket.to_string(), format!("{}{key}.json", self.prefix)),
        }
    }
}

/// A tag value as S3 accepts it: letters, digits, spaces and `+ - = . _ : / @`,
/// at most 256 characters; anything else becomes `_`.
pub(crate) fn tag_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

/// Too many tags of the object's own to add catdog's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the object has {own} tags of its own; S3 allows {S3_MAX_TAGS} and catdog adds {ours}: \
     remove some, or write records only (CATDOG_RESULTS=record)"
)]
pub(crate) struct TagLimit {
    pub(crate) own: usize,
    pub(crate) ours: usize,
}

/// The object's tags with catdog's set: PutObjectTagging replaces the whole
/// set, so the others are kept as they were and ours replace any earlier ones.
pub(crate) fn merge_tags(
    existing: Vec<(String, String)>,
    ours: &[(String, String)],
) -> Result<Vec<(String, String)>, TagLimit> {
    let mut merged: Vec<(String, String)> = existing
        .into_iter()
        .filter(|(k, _)| !ours.iter().any(|(o, _)| o == k))
        .collect();
    if merged.len() + ours.len() > S3_MAX_TAGS {
        return Err(TagLimit {
            own: merged.len(),
            ours: ours.len(),
        });
    }
    merged.extend(ours.iter().cloned());
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn our_tags_join_the_objects_own_and_replace_our_old_ones() {
        let ours = tags(&[(TAG_LABEL, "dog"), (TAG_CONFIDENCE, "0.9")]);
        let merged = merge_tags(
            tags(&[("owner", "ann"), (TAG_LABEL, "cat"), ("project", "x")]),
            &ours,
        )
        .unwrap();
        assert_eq!(
            merged,
            tags(&[
                ("owner", "ann"),
                ("project", "x"),
                (TAG_LABEL, "dog"),
                (TAG_CONFIDENCE, "0.9")
            ])
        );
    }

    #[test]
    fn the_ten_tag_limit_is_kept() {
        let ours = tags(&[(TAG_LABEL, "dog"), (TAG_CONFIDENCE, "1"), (TAG_MODEL, "m")]);
        let seven: Vec<_> = (0..7).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(merge_tags(seven.clone(), &ours).unwrap().len(), 10);
        let mut eight = seven;
        eight.push(("k7".into(), "v".into()));
        let e = merge_tags(eight, &ours).unwrap_err();
        assert_eq!(e, TagLimit { own: 8, ours: 3 });
        assert!(e.to_string().contains("CATDOG_RESULTS=record"), "{e}");
    }

    #[test]
    fn records_sit_under_the_prefix_which_is_never_classified() {
        let c = ResultsConfig {
            prefix: ResultsConfig::normalise_prefix("/out"),
            ..ResultsConfig::default()
        };
        assert_eq!(c.prefix, "out/");
        assert_eq!(
            c.record_location("b", "a b/c.jpg"),
            ("b".into(), "out/a b/c.jpg.json".into())
        );
        assert!(c.is_result_key("out/a b/c.jpg.json"));
        assert!(!c.is_result_key("outside.jpg"));
    }

    #[test]
    fn in_a_results_bucket_two_buckets_keys_never_share_a_record() {
        let c = ResultsConfig {
            bucket: Some("results".into()),
            ..ResultsConfig::default()
        };
        let (b1, k1) = c.record_location("b1", "x.jpg");
        let (b2, k2) = c.record_location("b2", "x.jpg");
        assert_eq!((b1.as_str(), b2.as_str()), ("results", "results"));
        assert_ne!(k1, k2);
        assert!(k1.ends_with("b1/x.jpg.json"), "{k1}");
    }

    #[test]
    fn tag_values_keep_to_what_s3_accepts() {
        assert_eq!(tag_value("golden retriever"), "golden retriever");
        assert_eq!(tag_value("a,b;c\"d"), "a_b_c_d");
        assert_eq!(tag_value(&"x".repeat(300)).len(), 256);
    }
}
