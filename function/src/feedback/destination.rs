//! `CATDOG_FEEDBACK`: where corrections are stored (and, as a `--data`
//! source, where fine-tuning reads photos).

use std::path::PathBuf;

/// A bucket and key prefix, or a local folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `s3://bucket/prefix/` (the prefix ends in `/`, or is empty).
    S3 { bucket: String, prefix: String },
    /// A folder (made when the first correction comes).
    Folder(PathBuf),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Destination::Folder(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// A feedback prefix that overlaps the uploads' or the records': corrections
/// would be classified as uploads, or taken for records.
#[derive(Debug, thiserror::Error)]
#[error(
    "CATDOG_FEEDBACK {feedback} overlaps {what} s3://{bucket}/{prefix}: give corrections a prefix of their own (e.g. s3://{bucket}/feedback/)"
)]
pub struct Overlap {
    feedback: String,
    what: &'static str,
    bucket: String,
    prefix: String,
}

impl Destination {
    /// Refuses a prefix that is, is under, or holds the uploads prefix (S3
    /// events classify what lands there) or, in the bucket records go to
    /// (`results.0`, else the uploads bucket), the results prefix.
    pub(crate) fn check_apart(
        &self,
        uploads: Option<&(String, String)>,
        results: (Option<&str>, &str),
    ) -> Result<(), Overlap> {
        let Destination::S3 { bucket, prefix } = self else {
            return Ok(());
        };
        let uploads_bucket = uploads.map(|(b, _)| b.as_str());
        let records_bucket = results.0.or(uploads_bucket);
        let apart = [
            (
                "the uploads",
                uploads_bucket,
                uploads.map(|(_, p)| p.as_str()),
            ),
            ("the records", records_bucket, Some(results.1)),
        ];
        let overlaps =
            |other: &str| prefix.starts_with(other) || other.starts_with(prefix.as_str());
        for (what, other_bucket, other_prefix) in apart {
            let (Some(other_bucket), Some(other_prefix)) = (other_bucket, other_prefix) else {
                continue;
            };
            if other_bucket == bucket && overlaps(other_prefix) {
                return Err(Overlap {
                    feedback: self.to_string(),
                    what,
                    bucket: bucket.clone(),
                    prefix: other_prefix.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_keep_apart_from_uploads_and_records() {
        let at = |prefix: &str| Destination::S3 {
            bucket: "b".into(),
            prefix: prefix.into(),
        };
        let uploads = ("b".to_string(), "incoming/".to_string());
        let check = |d: Destination| d.check_apart(Some(&uploads), (None, "catdog-results/"));
        assert!(check(at("feedback/")).is_ok());
        for bad in ["incoming/", "incoming/feedback/", "", "catdog-results/x/"] {
            assert!(check(at(bad)).is_err(), "{bad:?}");
        }
        let elsewhere = Destination::S3 {
            bucket: "other".into(),
            prefix: "incoming/".into(),
        };
        assert!(check(elsewhere).is_ok());
        assert!(check(Destination::Folder("incoming".into())).is_ok());
        // Records in a bucket of their own: their prefix is apart there.
        let records = Destination::S3 {
            bucket: "records".into(),
            prefix: "catdog-results/".into(),
        };
        assert!(records
            .check_apart(Some(&uploads), (Some("records"), "catdog-results/"))
            .is_err());
        assert!(at("catdog-results/")
            .check_apart(Some(&uploads), (Some("records"), "catdog-results/"))
            .is_ok());
    }
}
