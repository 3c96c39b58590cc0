//! The one safe wrapper around the `gemm` crate (std builds), for inference's f32 prompt blocks
//! and every product of the training backend: strided views checked against their slices.

/// A read-only matrix view: element (i, j) at `data[i·rs + j·cs]`, every index inside `data`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// Panics when an element (i, j) of the [rows, cols] view would fall outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> View<'a> {
        let last = (rows.saturating_sub(1))
            .checked_mul(rs)
            .and_then(|r| cols.saturating_sub(1).checked_mul(cs).map(|c| (r, c)))
            .and_then(|(r, c)| r.checked_add(c));
        assert!(
            rows == 0 || cols == 0 || last.is_some_and(|l| l < data.len()),
            "gemm view [{rows}, {cols}] with strides ({rs}, {cs}) overruns {} values",
            data.len()
        );
        View {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// Row-major [rows, cols] with rows `ld` apart (ld = cols for a whole matrix).
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> View<'a> {
        View::new(data, rows, cols, ld, 1)
    }

    /// (rows, cols).
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Columns j0.. of the view (no copy).
    fn cols_from(self, j0: usize) -> View<'a> {
        debug_assert!(j0 <= self.cols);
        View {
            data: &self.data[(j0 * self.cs).min(self.data.len())..],
            cols: self.cols - j0,
            ..self
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> View<'a> {
        View {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// c[m, n] (+)= a[m, k] · b[k, n], c row-major with rows `c_rs` apart, split across `threads`
/// (gemm never splits the k sum, so the result does not depend on the thread count).
pub fn gemm(
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    // Rows at least n apart, so no two outputs share memory (gemm writes them from several
    // threads), and the last row inside the slice.
    assert!(m == 1 || c_rs >= n, "gemm: output rows overlap");
    assert!(
        (m - 1)
            .checked_mul(c_rs)
            .and_then(|r| r.checked_add(n))
            .is_some_and(|end| end <= c.len()),
        "gemm: output overruns its slice"
    );
    // A short a (a prompt block) against a wide b (weights): gemm's own split packed the whole
    // of b on every thread, so two threads ran hardly faster than one. Here each thread takes a
    // band of b's columns, packs only those and writes only those columns of c.
    if threads > 1 && m <= SPLIT_COLUMNS_MAX_ROWS && n >= threads * COLUMN_BAND {
        let band = n.div_ceil(threads).div_ceil(COLUMN_BAND) * COLUMN_BAND;
        let c_at = c.as_mut_ptr() as usize;
        use rayon::prelude::*;
        (0..n.div_ceil(band)).into_par_iter().for_each(|j| {
            let (j0, w) = (j * band, band.min(n - j * band));
            // SAFETY: as below; the bands' columns j0..j0 + w of c are disjoint, so no two
            // threads write the same element, and b's band stays inside b's view.
            unsafe {
                product(
                    m,
                    w,
                    k,
                    (c_at as *mut f32).add(j0),
                    c_rs,
                    accumulate,
                    a,
                    b.cols_from(j0),
                    ::gemm::Parallelism::None,
                )
            }
        });
        return;
    }
    let par = if threads > 1 {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: the views' constructors and the assert above keep every index gemm forms inside
    // the three slices; c is exclusively borrowed, so it aliases neither input.
    unsafe { product(m, n, k, c.as_mut_ptr(), c_rs, accumulate, a, b, par) }
}

/// Rows of a up to which [`gemm`] splits b's columns across threads itself.
const SPLIT_COLUMNS_MAX_ROWS: usize = 512;
/// Width of the column bands (a multiple of gemm's register tiles).
const COLUMN_BAND: usize = 64;

/// The `gemm` crate's call: c[m, n] (+)= a · b[:, ..n].
///
/// # Safety
/// Every element (i < m, j < n) of c at `c + i·c_rs + j` is valid for writes and aliases neither
/// view; the views hold at least m × k and k × n elements.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
    a: View<'_>,
    b: View<'_>,
    par: ::gemm::Parallelism,
) {
    // SAFETY: the caller's contract.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// This machine's f32 product speed as benchmarks report it beside their own figures: FLOP/s of
/// c = a·b, all 512 × 512 row-major, on `threads` threads, the best of 10 after one warm-up.
pub fn gemm_512_flops(threads: usize) -> f64 {
    use std::vec::Vec;
    const N: usize = 512;
    let a: Vec<f32> = (0..N * N).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
    let b: Vec<f32> = (0..N * N).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
    let mut c = std::vec![0.0f32; N * N];
    let mut best = f64::INFINITY;
    for i in 0..11 {
        let t = std::time::Instant::now();
        gemm(
            View::rows(&a, N, N, N),
            View::rows(&b, N, N, N),
            &mut c,
            N,
            false,
            threads,
        );
        if i > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(&c);
    2.0 * (N * N * N) as f64 / best
}
