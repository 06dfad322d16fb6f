//! Allocation of buckets to variants (SPEC 2), shared by flag splits and experiments.
//!
//! Each variant owns a fixed slice of the 10,000 buckets in proportion to its weight; the
//! coverage (rollout or traffic allocation) serves only the first part of each slice. Because
//! slices never move when coverage grows, raising a rollout only adds users.

use crate::hash::BUCKETS;

/// The served bucket range of each variant, in allocation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    ranges: Vec<BucketRange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BucketRange {
    start: u16,
    end: u16,
    variant: usize,
}

impl Allocation {
    /// `weights[i]` is the weight of variant `i` (in allocation order); `coverage_bp` is in
    /// basis points (0..=10000). Returns `None` when all weights are zero.
    pub fn new(weights: &[u32], coverage_bp: u16) -> Option<Self> {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        let buckets = u64::from(BUCKETS);
        let coverage = u64::from(coverage_bp.min(10_000));
        let mut cumulative = 0u64;
        let mut ranges = Vec::with_capacity(weights.len());
        for (variant, weight) in weights.iter().enumerate() {
            let start = buckets * cumulative / total;
            cumulative += u64::from(*weight);
            let end = buckets * cumulative / total;
            let len = (end - start) * coverage / 10_000;
            if len > 0 {
                ranges.push(BucketRange { start: start as u16, end: (start + len) as u16, variant });
            }
        }
        Some(Allocation { ranges })
    }

    /// The variant index served for `bucket`, or `None` when the bucket is outside coverage.
    #[inline]
    pub fn variant_for(&self, bucket: u16) -> Option<usize> {
        self.ranges.iter().find(|r| r.start <= bucket && bucket < r.end).map(|r| r.variant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_spec_formula() {
        let a = Allocation::new(&[1, 1, 1], 10_000).unwrap();
        assert_eq!(a.variant_for(0), Some(0));
        assert_eq!(a.variant_for(3332), Some(0));
        assert_eq!(a.variant_for(3333), Some(1));
        assert_eq!(a.variant_for(6665), Some(1));
        assert_eq!(a.variant_for(6666), Some(2));
        assert_eq!(a.variant_for(9999), Some(2));
    }

    #[test]
    fn coverage_serves_the_start_of_each_slice() {
        let a = Allocation::new(&[50, 50], 2_500).unwrap();
        assert_eq!(a.variant_for(0), Some(0));
        assert_eq!(a.variant_for(1249), Some(0));
        assert_eq!(a.variant_for(1250), None);
        assert_eq!(a.variant_for(5000), Some(1));
        assert_eq!(a.variant_for(6249), Some(1));
        assert_eq!(a.variant_for(6250), None);
    }

    #[test]
    fn zero_weights_serve_nothing_and_all_zero_is_refused() {
        let a = Allocation::new(&[0, 1], 10_000).unwrap();
        assert_eq!(a.variant_for(0), Some(1));
        assert!(Allocation::new(&[0, 0], 10_000).is_none());
        assert_eq!(Allocation::new(&[1], 0).unwrap().variant_for(0), None);
    }
}
