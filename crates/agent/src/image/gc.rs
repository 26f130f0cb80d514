//! Which images the store's size limit collects: the least recently used
//! first, never one a running task uses (or one just imported), until the
//! blobs that the remaining images need fit under the limit. Blobs shared
//! between images count once and are freed only with their last image.

use std::collections::{BTreeMap, BTreeSet};

/// An image as the collector sees it.
#[derive(Debug, Clone)]
pub struct GcImage {
    /// Its manifest digest.
    pub digest: String,
    /// When it was last used (Unix ms).
    pub last_used: u64,
    /// Its blobs (hex digests): manifest, config, layers.
    pub blobs: BTreeSet<String>,
    /// In use by a task, or just imported: never collected.
    pub protected: bool,
}

fn needed(images: &[&GcImage], sizes: &BTreeMap<String, u64>) -> u64 {
    let blobs: BTreeSet<&String> = images.iter().flat_map(|i| &i.blobs).collect();
    blobs.iter().filter_map(|b| sizes.get(*b)).sum()
}

/// The manifest digests to remove, oldest use first, so that what the
/// remaining images need is at most `limit` bytes (or nothing unprotected
/// is left). `sizes`: each blob's size on disk.
pub fn lru_victims(images: &[GcImage], sizes: &BTreeMap<String, u64>, limit: u64) -> Vec<String> {
    let mut order: Vec<&GcImage> = images.iter().filter(|i| !i.protected).collect();
    order.sort_by(|a, b| (a.last_used, &a.digest).cmp(&(b.last_used, &b.digest)));
    let mut left: Vec<&GcImage> = images.iter().collect();
    let mut victims = Vec::new();
    for v in order {
        if needed(&left, sizes) <= limit {
            break;
        }
        left.retain(|i| i.digest != v.digest);
        victims.push(v.digest.clone());
    }
    victims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(d: &str, used: u64, blobs: &[&str], protected: bool) -> GcImage {
        GcImage {
            digest: d.into(),
            last_used: used,
            blobs: blobs.iter().map(|b| b.to_string()).collect(),
            protected,
        }
    }

    fn sizes(s: &[(&str, u64)]) -> BTreeMap<String, u64> {
        s.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn least_recently_used_goes_first_until_under_the_limit() {
        let s = sizes(&[("a", 10), ("b", 10), ("c", 10)]);
        let images = [
            img("new", 300, &["c"], false),
            img("old", 100, &["a"], false),
            img("mid", 200, &["b"], false),
        ];
        assert_eq!(lru_victims(&images, &s, 20), ["old"]);
        assert_eq!(lru_victims(&images, &s, 10), ["old", "mid"]);
        assert!(lru_victims(&images, &s, 30).is_empty());
    }

    #[test]
    fn pinned_images_are_never_chosen() {
        let s = sizes(&[("a", 10), ("b", 10)]);
        let images = [img("old", 1, &["a"], true), img("new", 2, &["b"], false)];
        assert_eq!(lru_victims(&images, &s, 10), ["new"]);
        // Nothing unprotected left: over the limit, but nothing to take.
        let images = [img("old", 1, &["a"], true), img("new", 2, &["b"], true)];
        assert!(lru_victims(&images, &s, 0).is_empty());
    }

    #[test]
    fn shared_blobs_count_once_and_free_only_with_their_last_image() {
        // old and mid share the big base layer: removing old frees 1 byte
        // only, so mid goes too.
        let s = sizes(&[("base", 100), ("x", 1), ("y", 1), ("z", 5)]);
        let images = [
            img("old", 1, &["base", "x"], false),
            img("mid", 2, &["base", "y"], false),
            img("new", 3, &["z"], false),
        ];
        assert_eq!(lru_victims(&images, &s, 106), ["old"]);
        assert_eq!(lru_victims(&images, &s, 50), ["old", "mid"]);
    }
}
