//! The pieces of CPython's `random.Random` that lm-evaluation-harness uses to draw
//! few-shot examples (`Random(1234).sample(docs, n)`), bit for bit.

use super::numpy_rng::LegacyRandomState;

/// `random.Random(seed)` for a non-negative integer seed.
pub struct PyRandom {
    mt: LegacyRandomState,
}

impl PyRandom {
    /// Seeded as CPython seeds from an int: `init_by_array` over the 32-bit words of
    /// `|seed|`, least significant first.
    pub fn new(seed: u64) -> PyRandom {
        let mut key = vec![seed as u32];
        if seed >> 32 != 0 {
            key.push((seed >> 32) as u32);
        }
        PyRandom {
            mt: LegacyRandomState::from_key(&key),
        }
    }

    /// `getrandbits(k)` for `1 ≤ k ≤ 32`.
    pub fn getrandbits(&mut self, k: u32) -> u32 {
        debug_assert!((1..=32).contains(&k));
        self.mt.next_u32() >> (32 - k)
    }

    /// `random()`: 53 random bits as a float in [0, 1).
    pub fn random(&mut self) -> f64 {
        let a = (self.mt.next_u32() >> 5) as f64;
        let b = (self.mt.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// `_randbelow(n)`: rejection sampling on `n.bit_length()` bits.
    pub fn randbelow(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let k = usize::BITS - n.leading_zeros();
        debug_assert!(k <= 32, "population too large for one 32-bit draw");
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// Indices drawn by `sample(range(n), k)`: the pool method for small populations,
    /// the set method otherwise, as CPython 3.11 chooses between them.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "sample larger than population");
        let mut setsize = 21usize;
        if k > 5 {
            // 4 ** ceil(log(3k, 4)), computed as CPython does, in floating point.
            setsize += 4usize.pow(((3 * k) as f64).log(4.0).ceil() as u32);
        }
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            (0..k)
                .map(|i| {
                    let j = self.randbelow(n - i);
                    let picked = pool[j];
                    pool[j] = pool[n - i - 1];
                    picked
                })
                .collect()
        } else {
            let mut seen = std::collections::HashSet::new();
            (0..k)
                .map(|_| loop {
                    let j = self.randbelow(n);
                    if seen.insert(j) {
                        break j;
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PyRandom;

    #[test]
    fn getrandbits_matches_cpython() {
        let mut r = PyRandom::new(1234);
        let got: Vec<u32> = (0..3).map(|_| r.getrandbits(32)).collect();
        assert_eq!(got, [4150886329, 3342196574, 1892932127]);
    }

    #[test]
    fn sample_matches_cpython_pool_and_set_methods() {
        let mut r = PyRandom::new(1234);
        assert_eq!(r.sample(8, 5), [7, 0, 6, 5, 4]);
        assert_eq!(r.sample(8, 5), [1, 0, 2, 7, 6]);
        let mut r = PyRandom::new(1234);
        assert_eq!(&r.sample(1119, 25)[..5], [902, 239, 15, 185, 71]);
        let mut r = PyRandom::new(1234);
        assert_eq!(
            r.sample(39905, 11),
            [28883, 7657, 490, 5940, 38156, 2288, 5500, 6450, 23241, 15519, 1142]
        );
    }
}
