//! ImageNet-1k knowledge for models that carry no labels: the 1000 class names
//! and which of them are domestic cats and dogs.
//!
//! A stock ImageNet classifier (e.g. the ONNX Model Zoo VGG16) answers cat or
//! dog by summing the probabilities of each group; see [`group`].

use std::sync::OnceLock;

/// Number of ImageNet-1k classes; a label-less model with this many outputs is
/// treated as an ImageNet classifier.
pub(crate) const NUM_CLASSES: usize = 1000;
/// Domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
pub(crate) const CAT_CLASSES: std::ops::RangeInclusive<usize> = 281..=285;
/// Dogs: Chihuahua (151) through Mexican hairless (268).
pub(crate) const DOG_CLASSES: std::ops::RangeInclusive<usize> = 151..=268;
/// Below this summed cat+dog probability the answer is `neither`.
pub const DEFAULT_NEITHER_BELOW: f32 = 0.2;

const NAMES_TXT: &str = include_str!("../../assets/imagenet_classes.txt");

/// The 1000 class names, index = class id (torchvision's list).
pub(crate) fn class_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| NAMES_TXT.lines().collect())
}

/// Summed probabilities of the cat and dog groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Groups {
    pub(crate) cat: f32,
    pub(crate) dog: f32,
}

/// Sums a 1000-way probability vector into the cat and dog groups.
pub(crate) fn group(probs: &[f32]) -> Groups {
    Groups {
        cat: probs[CAT_CLASSES].iter().sum(),
        dog: probs[DOG_CLASSES].iter().sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_complete_and_groups_are_right() {
        let names = class_names();
        assert_eq!(names.len(), NUM_CLASSES);
        assert_eq!(names[281], "tabby");
        assert_eq!(names[285], "Egyptian cat");
        assert_eq!(names[151], "Chihuahua");
        assert_eq!(names[268], "Mexican hairless");
        assert_eq!(names[286], "cougar");
    }

    #[test]
    fn grouping_sums_only_the_group() {
        let mut p = vec![0.0f32; NUM_CLASSES];
        p[282] = 0.5;
        p[200] = 0.25;
        p[286] = 0.25; // a cougar is not a house cat
        let g = group(&p);
        assert_eq!(
            g,
            Groups {
                cat: 0.5,
                dog: 0.25
            }
        );
    }
}
