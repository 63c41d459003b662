//! A fixed, portable hash (FNV-1a 64 with a SplitMix64 finalizer: no `RandomState`, the same
//! on every machine and run) and the consistent-hash ring of `consistent_hash`.

/// Virtual nodes per worker: the share of keys a worker owns varies by about 1/sqrt(vnodes).
pub const DEFAULT_VNODES: u32 = 160;

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: spreads FNV's weak low bits over the whole word.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn hash_str(s: &str) -> u64 {
    mix(fnv1a(s.as_bytes()))
}

/// A fixed hasher for in-memory maps keyed by ids (no `RandomState`: runs are reproducible
/// even in iteration-free lookups, and it is cheaper than SipHash for 16-byte keys).
#[derive(Clone, Copy, Default, Debug)]
pub struct FixedHasher(u64);

impl std::hash::Hasher for FixedHasher {
    fn finish(&self) -> u64 {
        mix(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = mix(self.0 ^ u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = mix(self.0 ^ v);
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = mix(self.0 ^ v as u64) ^ (v >> 64) as u64;
    }
}

pub type FixedState = std::hash::BuildHasherDefault<FixedHasher>;

/// A ring of `vnodes` points per worker name. A key belongs to the first point clockwise
/// from its hash; when a worker leaves only the keys it owned move.
#[derive(Clone, Debug)]
pub struct HashRing {
    vnodes: u32,
    names: Vec<String>,
    /// (point, index into `names`), sorted.
    points: Vec<(u64, u32)>,
}

impl HashRing {
    pub fn new(vnodes: u32) -> Self {
        HashRing {
            vnodes: vnodes.max(1),
            names: Vec::new(),
            points: Vec::new(),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Rebuilds the ring if the worker names differ from the ones it was built for.
    /// Name `i` of the iterator is index `i` in lookups.
    pub fn sync<'a>(&mut self, names: impl Iterator<Item = &'a str> + Clone) {
        let same = names.clone().count() == self.names.len()
            && names.clone().zip(&self.names).all(|(a, b)| a == b);
        if same {
            return;
        }
        self.names = names.map(str::to_string).collect();
        self.points.clear();
        for (i, n) in self.names.iter().enumerate() {
            let base = fnv1a(n.as_bytes());
            for v in 0..self.vnodes {
                let p = mix(base ^ mix(v as u64 + 1));
                self.points.push((p, i as u32));
            }
        }
        self.points.sort_unstable();
    }

    /// The first worker clockwise from `key` for which `accept(index)` holds.
    pub fn lookup(&self, key: &str, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash_str(key);
        let start = self.points.partition_point(|&(p, _)| p < h);
        let n = self.points.len();
        // The common case, without allocating: the owner itself is acceptable.
        let first = self.points[start % n].1 as usize;
        if accept(first) {
            return Some(first);
        }
        let mut tried = vec![false; self.names.len()];
        let mut distinct = 0;
        for j in 0..n {
            let idx = self.points[(start + j) % n].1 as usize;
            if tried[idx] {
                continue;
            }
            if accept(idx) {
                return Some(idx);
            }
            tried[idx] = true;
            distinct += 1;
            if distinct == self.names.len() {
                break;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_the_reference_function() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn ring_owner_is_stable_and_only_the_leaver_loses_keys() {
        let names: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
        let mut ring = HashRing::new(DEFAULT_VNODES);
        ring.sync(names.iter().map(String::as_str));
        let keys: Vec<String> = (0..4000).map(|i| format!("key-{i}")).collect();
        let before: Vec<String> = keys
            .iter()
            .map(|k| names[ring.lookup(k, |_| true).unwrap()].clone())
            .collect();
        let rest: Vec<String> = names.iter().filter(|n| *n != "w3").cloned().collect();
        ring.sync(rest.iter().map(String::as_str));
        let mut moved = 0;
        for (k, old) in keys.iter().zip(&before) {
            let now = &rest[ring.lookup(k, |_| true).unwrap()];
            if now != old {
                assert_eq!(old, "w3", "only the leaver's keys move");
                moved += 1;
            }
        }
        assert!(
            moved > 4000 / 8 / 2 && moved < 4000 * 2 / 8,
            "moved {moved}"
        );
    }
}
