//! Small dense f32 products for the invariants (probe tokens × weights). Lineage studies
//! a few hundred vectors, so plain vectorizable loops on scoped threads suffice.

/// Dot product with eight independent partial sums (vectorizes without fast-math).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, ra) = a.split_at(a.len() - a.len() % 16);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(16).zip(cb.chunks_exact(16)) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `Y = X Wᵀ`: `x` is `n × cols`, `w` is `rows × cols` (one weight row per output), the
/// result `n × rows`. Output rows are split over `threads` threads.
pub fn matmul_t(
    x: &[f32],
    n: usize,
    w: &[f32],
    rows: usize,
    cols: usize,
    threads: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), n * cols, "x is n × cols");
    assert_eq!(w.len(), rows * cols, "w is rows × cols");
    let mut y = vec![0.0f32; n * rows];
    let threads = threads.clamp(1, rows.max(1));
    let per = rows.div_ceil(threads);
    // Each thread computes a block of weight rows for every input and returns it
    // column-major; the blocks are then scattered into `y`.
    let blocks: Vec<(usize, Vec<f32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let lo = (t * per).min(rows);
                let hi = ((t + 1) * per).min(rows);
                s.spawn(move || {
                    let mut out = vec![0.0f32; (hi - lo) * n];
                    for (r, o) in (lo..hi).zip(out.chunks_exact_mut(n.max(1))) {
                        let wr = &w[r * cols..(r + 1) * cols];
                        for (i, v) in o.iter_mut().enumerate() {
                            *v = dot(&x[i * cols..(i + 1) * cols], wr);
                        }
                    }
                    (lo, out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("matmul threads do not panic"))
            .collect()
    });
    for (lo, out) in blocks {
        for (k, col) in out.chunks_exact(n.max(1)).enumerate() {
            for (i, v) in col.iter().enumerate() {
                y[i * rows + lo + k] = *v;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_t_matches_the_definition() {
        let (n, rows, cols) = (5, 7, 37);
        let x: Vec<f32> = (0..n * cols).map(|i| (i as f32 * 0.1).sin()).collect();
        let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.3).cos()).collect();
        let y = matmul_t(&x, n, &w, rows, cols, 3);
        for i in 0..n {
            for r in 0..rows {
                let want: f32 = (0..cols).map(|k| x[i * cols + k] * w[r * cols + k]).sum();
                assert!((y[i * rows + r] - want).abs() < 1e-4, "({i},{r})");
            }
        }
    }
}
