//! Bucketing hash of SPEC 2: `murmur3_x86_32(salt + ":" + unit, seed 0)` scaled to 0..=9999.
//!
//! MurmurHash3 is hand-written here although crates exist: the evaluator hashes
//! `salt:unit` without building that string, by keeping the hash state after the flag's
//! `salt:` prefix (prepared once at compile time) and streaming the unit into a copy of it.
//! That keeps a split evaluation free of heap allocation. Tests check it against the SPEC
//! vectors and against the `murmur3` crate on random inputs.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Number of buckets; a bucket is a basis point of the population.
pub const BUCKETS: u32 = 10_000;

/// Streaming MurmurHash3 x86_32 state.
#[derive(Clone, Copy, Debug)]
pub struct Murmur3 {
    h1: u32,
    tail: [u8; 4],
    tail_len: usize,
    len: u32,
}

impl Murmur3 {
    pub fn new(seed: u32) -> Self {
        Self { h1: seed, tail: [0; 4], tail_len: 0, len: 0 }
    }

    pub fn write(&mut self, mut bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u32);
        if self.tail_len > 0 {
            let take = (4 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 4 {
                return;
            }
            self.mix_block(u32::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut blocks = bytes.chunks_exact(4);
        for block in &mut blocks {
            self.mix_block(u32::from_le_bytes([block[0], block[1], block[2], block[3]]));
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    #[inline]
    fn mix_block(&mut self, block: u32) {
        let k1 = block.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        self.h1 ^= k1;
        self.h1 = self.h1.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }

    pub fn finish(&self) -> u32 {
        let mut h1 = self.h1;
        if self.tail_len > 0 {
            let mut k1 = 0u32;
            for (i, b) in self.tail[..self.tail_len].iter().enumerate() {
                k1 ^= u32::from(*b) << (8 * i);
            }
            h1 ^= k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        }
        h1 ^= self.len;
        h1 ^= h1 >> 16;
        h1 = h1.wrapping_mul(0x85eb_ca6b);
        h1 ^= h1 >> 13;
        h1 = h1.wrapping_mul(0xc2b2_ae35);
        h1 ^ (h1 >> 16)
    }
}

/// MurmurHash3 x86_32 of a byte string.
pub fn murmur3_x86_32(bytes: &[u8], seed: u32) -> u32 {
    let mut h = Murmur3::new(seed);
    h.write(bytes);
    h.finish()
}

/// Maps a 32-bit hash onto a bucket in `0..10000`: `(u64(h) * 10000) >> 32`.
pub fn bucket_of(h: u32) -> u16 {
    ((u64::from(h) * u64::from(BUCKETS)) >> 32) as u16
}

/// The hash state after `salt:`; hashing a unit is then one copy and one `write`.
#[derive(Clone, Copy, Debug)]
pub struct SaltedHasher(Murmur3);

impl SaltedHasher {
    pub fn new(salt: &str) -> Self {
        let mut h = Murmur3::new(0);
        h.write(salt.as_bytes());
        h.write(b":");
        SaltedHasher(h)
    }

    pub fn hash(&self, unit: &[u8]) -> u32 {
        let mut h = self.0;
        h.write(unit);
        h.finish()
    }

    pub fn bucket(&self, unit: &[u8]) -> u16 {
        bucket_of(self.hash(unit))
    }
}

/// `h` and `bucket` for `salt` and `unit`, as `vexil hash` prints them.
pub fn hash_unit(salt: &str, unit: &str) -> (u32, u16) {
    let h = SaltedHasher::new(salt).hash(unit.as_bytes());
    (h, bucket_of(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_reference_vectors() {
        assert_eq!(hash_unit("new_checkout", "user_123"), (325_947_385, 758));
        assert_eq!(hash_unit("checkout_redesign", "user_1"), (3_578_164_314, 8331));
        assert_eq!(hash_unit("a", ""), (4_050_473_235, 9430));
        assert_eq!(hash_unit("flag", "ünïcødé"), (1_877_172_482, 4370));
    }

    #[test]
    fn bucket_spans_the_whole_range() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(u32::MAX), 9999);
    }

    proptest! {
        #[test]
        fn agrees_with_the_murmur3_crate(bytes in proptest::collection::vec(any::<u8>(), 0..64), seed: u32) {
            let expected = murmur3::murmur3_32(&mut std::io::Cursor::new(&bytes), seed).unwrap();
            prop_assert_eq!(murmur3_x86_32(&bytes, seed), expected);
        }

        #[test]
        fn streaming_in_pieces_equals_one_shot(salt in ".{0,20}", unit in ".{0,40}") {
            let whole = format!("{salt}:{unit}");
            prop_assert_eq!(SaltedHasher::new(&salt).hash(unit.as_bytes()), murmur3_x86_32(whole.as_bytes(), 0));
        }
    }
}
