//! The same picture more than once among the photos (a correction of a
//! photo that is already there, one `--data` given twice) is trained on
//! once; the same picture under two labels (people disagree) is left out,
//! and named. Pictures are the same when their bytes are.

use std::collections::HashMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::data::{DataError, Split};

/// What [`dedupe`] left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Deduped {
    /// Copies of a picture kept once.
    pub(crate) duplicates: usize,
    /// Every copy of a picture found under more than one label.
    pub(crate) conflicting: Vec<PathBuf>,
}

/// Keeps each picture of `splits` (train, then valid) once: its first copy,
/// or none when its copies disagree on the label.
pub(crate) fn dedupe(splits: [&mut Split; 2]) -> Result<Deduped, DataError> {
    let mut copies: HashMap<[u8; 32], Vec<(usize, usize)>> = HashMap::new();
    for (s, split) in splits.iter().enumerate() {
        for (i, (path, _)) in split.files.iter().enumerate() {
            let bytes = std::fs::read(path).map_err(|source| DataError::Io {
                path: path.clone(),
                source,
            })?;
            copies
                .entry(Sha256::digest(&bytes).into())
                .or_default()
                .push((s, i));
        }
    }
    let label = |(s, i): (usize, usize)| &splits[s].labels[splits[s].files[i].1];
    let mut drop = vec![
        vec![false; splits[0].files.len()],
        vec![false; splits[1].files.len()],
    ];
    let mut done = Deduped::default();
    for places in copies.values().filter(|p| p.len() > 1) {
        let agree = places.iter().all(|&p| label(p) == label(places[0]));
        let dropped = if agree { &places[1..] } else { &places[..] };
        for &(s, i) in dropped {
            drop[s][i] = true;
        }
        if agree {
            done.duplicates += dropped.len();
        } else {
            done.conflicting
                .extend(places.iter().map(|&(s, i)| splits[s].files[i].0.clone()));
        }
    }
    done.conflicting.sort();
    for (split, drop) in splits.into_iter().zip(drop) {
        let mut keep = drop.iter().map(|d| !d);
        split.files.retain(|_| keep.next().unwrap_or(true));
    }
    Ok(done)
}

// Tests make their own temporary folder.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_kept_once_and_disagreements_not_at_all() {
        let dir = std::env::temp_dir().join(format!("catdog-dedupe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let (a, a2, b, b_dog, c) = (
            file("a.jpg", b"a"),
            file("a2.jpg", b"a"),
            file("b.jpg", b"b"),
            file("b-dog.jpg", b"b"),
            file("c.jpg", b"c"),
        );
        let labels = vec!["cat".to_string(), "dog".to_string()];
        let mut train = Split {
            labels: labels.clone(),
            files: vec![(a.clone(), 0), (b.clone(), 0), (c.clone(), 1)],
        };
        let mut valid = Split {
            labels,
            files: vec![(a2, 0), (b_dog.clone(), 1)],
        };
        let done = dedupe([&mut train, &mut valid]).unwrap();
        assert_eq!(done.duplicates, 1);
        assert_eq!(done.conflicting, {
            let mut v = vec![b, b_dog];
            v.sort();
            v
        });
        assert_eq!(train.files, vec![(a, 0), (c, 1)]);
        assert!(valid.files.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
