//! A digest of a retention step's eligible keys, so that a saved plan means
//! the rows that were reviewed, not just as many of them.
//!
//! `plan diff --out` records, per retention step, the digest of the keys
//! its delete would take; `plan apply SAVED` recomputes it at the saved
//! reference time and refuses a changed set (`--accept-drift` applies
//! anyway and says so in the report). The digest is 64 buckets of (rows,
//! XOR of a 64-bit FNV-1a hash of each key's text): equal sets always give
//! equal digests, a changed set is caught unless its changes cancel in
//! every bucket (a collision of 64-bit hashes), and comparing bucket by
//! bucket gives a lower bound of the rows that left and joined the set
//! (exact while the changes are fewer than the buckets, as in the cases a
//! reviewer cares about). Keys are read once, streamed, in the read-only
//! inspection: only for saved plans, never for a plain diff or apply.

use serde::{Deserialize, Serialize};

/// Buckets per digest.
const BUCKETS: usize = 64;

/// The digest of a set of keys (order does not matter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDigest {
    pub rows: u64,
    /// Per bucket: (keys, XOR of their hashes).
    pub buckets: Vec<(u64, u64)>,
}

impl Default for KeyDigest {
    fn default() -> Self {
        Self {
            rows: 0,
            buckets: vec![(0, 0); BUCKETS],
        }
    }
}

/// How a set changed: at least this many keys left it and joined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub left: u64,
    pub joined: u64,
}

impl KeyDigest {
    pub fn add(&mut self, key: &str) {
        let h = fnv1a(key.as_bytes());
        let b = &mut self.buckets[(h % BUCKETS as u64) as usize];
        b.0 += 1;
        b.1 ^= h;
        self.rows += 1;
    }

    /// `None` when the sets are (as far as the digest tells) the same.
    pub fn change_to(&self, now: &KeyDigest) -> Option<Change> {
        if self == now {
            return None;
        }
        let mut c = Change { left: 0, joined: 0 };
        for (then, now) in self.buckets.iter().zip(&now.buckets) {
            match now.0.cmp(&then.0) {
                std::cmp::Ordering::Greater => c.joined += now.0 - then.0,
                std::cmp::Ordering::Less => c.left += then.0 - now.0,
                // Same count, other keys: one left and one joined at least.
                std::cmp::Ordering::Equal if now.1 != then.1 => {
                    c.left += 1;
                    c.joined += 1;
                }
                std::cmp::Ordering::Equal => {}
            }
        }
        // Digests of another shape (a future bucket count) differ whole.
        if c.left == 0 && c.joined == 0 {
            c.left = self.rows;
            c.joined = now.rows;
        }
        Some(c)
    }
}

/// 64-bit FNV-1a: stable across versions and platforms (the digest is
/// saved in plan files), and fast enough for a key per row.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(keys: impl IntoIterator<Item = u32>) -> KeyDigest {
        let mut d = KeyDigest::default();
        for k in keys {
            d.add(&k.to_string());
        }
        d
    }

    #[test]
    fn the_same_keys_in_any_order_give_the_same_digest() {
        assert_eq!(digest(1..=70), digest((1..=70).rev()));
        assert_eq!(digest(1..=70).change_to(&digest((1..=70).rev())), None);
    }

    #[test]
    fn same_count_other_rows_is_a_change_with_left_and_joined() {
        // 10 rows swapped for 10 others: the count alone would not see it.
        let then = digest(1..=70);
        let now = digest((11..=80).collect::<Vec<_>>());
        let c = then.change_to(&now).expect("a change");
        assert_eq!(then.rows, now.rows);
        assert!(c.left >= 1 && c.joined >= 1, "{c:?}");
        assert!(c.left <= 10 && c.joined <= 10, "{c:?}");
        // One swapped row is counted exactly.
        let c = digest(1..=70)
            .change_to(&digest((1..=69).chain([1000])))
            .expect("a change");
        assert_eq!(c, Change { left: 1, joined: 1 });
    }

    /// A key swapped for another of the same bucket leaves every count as
    /// it was: only the hashes tell. With ~31 keys a bucket (2,000 keys),
    /// an OR of their hashes would be all ones on both sides; the XOR
    /// still differs, and the change is counted exactly.
    #[test]
    fn a_swap_inside_one_full_bucket_is_seen_by_its_hashes() {
        let bucket = |k: u32| fnv1a(k.to_string().as_bytes()) % BUCKETS as u64;
        let twin = (2001..).find(|&k| bucket(k) == bucket(7)).expect("a key in 7's bucket");
        let then = digest(1..=2000);
        let now = digest((1..=2000).filter(|&k| k != 7).chain([twin]));
        assert_eq!(
            then.buckets.iter().map(|b| b.0).collect::<Vec<_>>(),
            now.buckets.iter().map(|b| b.0).collect::<Vec<_>>()
        );
        assert_eq!(then.change_to(&now), Some(Change { left: 1, joined: 1 }));
    }

    #[test]
    fn rows_joining_or_leaving_are_counted() {
        assert_eq!(
            digest(1..=70).change_to(&digest(1..=73)),
            Some(Change { left: 0, joined: 3 })
        );
        assert_eq!(
            digest(1..=70).change_to(&digest(1..=68)),
            Some(Change { left: 2, joined: 0 })
        );
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of FNV-1a 64.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
