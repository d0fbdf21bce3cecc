use huarizo_kernels::gemm::gemm;
use std::time::Instant;
fn main() {
    gemm_crate();
    for &(m, k, n) in &[
        (1024usize, 576usize, 1536usize),
        (256, 576, 1536),
        (1024, 1536, 576),
        (1024, 64, 576),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        gemm((m, k, n), &a, false, &b, true, 0.0, &mut c);
        let t = Instant::now();
        let reps = 10;
        for _ in 0..reps {
            gemm((m, k, n), &a, false, &b, true, 0.0, &mut c);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{m}x{k}x{n}: {:.1} GFLOP/s single thread",
            2.0 * (m * k * n) as f64 / s / 1e9
        );
    }
}
#[allow(dead_code)]
fn unused() {}
pub fn gemm_crate() {
    for &(m, k, n) in &[
        (1024usize, 576usize, 1536usize),
        (256, 576, 1536),
        (1024, 1536, 576),
        (1024, 64, 576),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let run = |c: &mut Vec<f32>| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                k as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        };
        run(&mut c);
        let t = Instant::now();
        let reps = 10;
        for _ in 0..reps {
            run(&mut c);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "gemm crate {m}x{k}x{n}: {:.1} GFLOP/s single thread",
            2.0 * (m * k * n) as f64 / s / 1e9
        );
    }
}
