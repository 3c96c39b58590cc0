//! erf, e^x and the exact GELU with its derivative over whole SIMD registers (std builds): the
//! vector twins of `libm::erff` / `libm::expf` that `ops::activation` calls per element.
//!
//! erf is FreeBSD's `s_erff.c` (libm's `erff`) evaluated on every lane: the same rational
//! approximations on |x| < 0.84375, [0.84375, 1.25), [1.25, 1/0.35), [1/0.35, 6) and ±1 beyond,
//! each computed for all lanes and selected per lane (no branches), so it differs from libm only
//! by fused multiply-adds and the vector exp: within 1 ulp of the true erf (the bound
//! `core/tests/kernels.rs` checks against f64 `libm::erf` over a dense range and edge values).
//! e^x is Cody–Waite reduction to |r| ≤ ln2/2 and the degree-7 Taylor polynomial (truncation
//! 5e-9 relative), scaled by 2^n built in the exponent bits (in two factors, so that results
//! down to the subnormals come out right).

use pulp::Simd;

/// A polynomial's value at x, coefficients from the constant term up (Horner, fused).
#[inline(always)]
fn poly<S: Simd>(s: S, x: S::f32s, c: &[f32]) -> S::f32s {
    let mut acc = s.splat_f32s(c[c.len() - 1]);
    for &k in c[..c.len() - 1].iter().rev() {
        acc = s.mul_add_e_f32s(acc, x, s.splat_f32s(k));
    }
    acc
}

/// e^x per lane, to the subnormals below and +∞ above; NaN kept.
#[inline(always)]
pub(crate) fn exp<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const TAYLOR: [f32; 8] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    // Past −104 e^x rounds to 0, past 89 to +∞; the clamp keeps n in [−150, 128].
    let xc = s.min_f32s(s.max_f32s(x, s.splat_f32s(-104.0)), s.splat_f32s(89.0));
    let n = round(s, s.mul_f32s(xc, s.splat_f32s(LOG2E)));
    let r = s.mul_add_e_f32s(n, s.splat_f32s(-LN2_HI), xc);
    let r = s.mul_add_e_f32s(n, s.splat_f32s(-LN2_LO), r);
    let p = poly(s, r, &TAYLOR);
    // 2^n as 2^n1 · 2^(n − n1), n1 ≈ n/2: both factors normal down to the subnormal results,
    // and each product exact wherever the result is normal.
    let n1 = round(s, s.mul_f32s(n, s.splat_f32s(0.5)));
    let y = s.mul_f32s(s.mul_f32s(p, pow2(s, n1)), pow2(s, s.sub_f32s(n, n1)));
    s.select_f32s(s.equal_f32s(x, x), y, x)
}

/// 1.5·2^23: adding it rounds a float below 2^22 in magnitude to an integer, held in the low
/// mantissa bits.
const SHIFTER: f32 = 12_582_912.0;

/// x rounded to an integer (ties to even), |x| < 2^22.
#[inline(always)]
fn round<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let k = s.splat_f32s(SHIFTER);
    s.sub_f32s(s.add_f32s(x, k), k)
}

/// 2^n for an integral n in [−126, 127]: (n + 127) << 23 read from n + SHIFTER's low bits.
#[inline(always)]
fn pow2<S: Simd>(s: S, n: S::f32s) -> S::f32s {
    let t = s.transmute_u32s_f32s(s.add_f32s(n, s.splat_f32s(SHIFTER)));
    let e = s.sub_u32s(t, s.splat_u32s(SHIFTER.to_bits().wrapping_sub(127)));
    s.transmute_f32s_u32s(s.wrapping_dyn_shl_u32s(e, s.splat_u32s(23)))
}

/// erf per lane (libm's `erff` algorithm and its coefficients, bit for bit; see the module comment).
#[inline(always)]
pub(crate) fn erf<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    const ERX: f32 = f32::from_bits(0x3f58560b);
    const PP: [f32; 5] = [
        f32::from_bits(0x3e0375d4), // PP0
        f32::from_bits(0xbea66beb), // PP1
        f32::from_bits(0xbce9528f), // PP2
        f32::from_bits(0xbbbd1489), // PP3
        f32::from_bits(0xb7c756b1), // PP4
    ];
    const QQ: [f32; 6] = [
        1.0,
        f32::from_bits(0x3ecbbbce), // QQ1
        f32::from_bits(0x3d852a63), // QQ2
        f32::from_bits(0x3ba68116), // QQ3
        f32::from_bits(0x390aee49), // QQ4
        f32::from_bits(0xb684e21a), // QQ5
    ];
    const PA: [f32; 7] = [
        f32::from_bits(0xbb1acdc6), // PA0
        f32::from_bits(0x3ed46805), // PA1
        f32::from_bits(0xbebe9208), // PA2
        f32::from_bits(0x3ea2fe54), // PA3
        f32::from_bits(0xbde31cc2), // PA4
        f32::from_bits(0x3d1151b3), // PA5
        f32::from_bits(0xbb0df9c0), // PA6
    ];
    const QA: [f32; 7] = [
        1.0,
        f32::from_bits(0x3dd9f331), // QA1
        f32::from_bits(0x3f0a5785), // QA2
        f32::from_bits(0x3d931ae7), // QA3
        f32::from_bits(0x3e013307), // QA4
        f32::from_bits(0x3c5f6e13), // QA5
        f32::from_bits(0x3c445aa3), // QA6
    ];
    const RA: [f32; 8] = [
        f32::from_bits(0xbc21a093), // RA0
        f32::from_bits(0xbf31a0b7), // RA1
        f32::from_bits(0xc128f022), // RA2
        f32::from_bits(0xc2798057), // RA3
        f32::from_bits(0xc322658c), // RA4
        f32::from_bits(0xc3389ae7), // RA5
        f32::from_bits(0xc2a2932b), // RA6
        f32::from_bits(0xc11d077e), // RA7
    ];
    const SA: [f32; 9] = [
        1.0,
        f32::from_bits(0x419d35ce), // SA1
        f32::from_bits(0x4309a863), // SA2
        f32::from_bits(0x43d9486f), // SA3
        f32::from_bits(0x442158c9), // SA4
        f32::from_bits(0x43d6810b), // SA5
        f32::from_bits(0x42d9451f), // SA6
        f32::from_bits(0x40d23f7c), // SA7
        f32::from_bits(0xbd777f97), // SA8
    ];
    const RB: [f32; 7] = [
        f32::from_bits(0xbc21a092), // RB0
        f32::from_bits(0xbf4c9dd4), // RB1
        f32::from_bits(0xc18e104b), // RB2
        f32::from_bits(0xc320a2ea), // RB3
        f32::from_bits(0xc41f6441), // RB4
        f32::from_bits(0xc480230b), // RB5
        f32::from_bits(0xc3f1c275), // RB6
    ];
    const SB: [f32; 8] = [
        1.0,
        f32::from_bits(0x41f2b459), // SB1
        f32::from_bits(0x43a2e571), // SB2
        f32::from_bits(0x44c01759), // SB3
        f32::from_bits(0x4547fdbb), // SB4
        f32::from_bits(0x451f90ce), // SB5
        f32::from_bits(0x43ed43a7), // SB6
        f32::from_bits(0xc1b38712), // SB7
    ];
    let one = s.splat_f32s(1.0);
    let ax = s.abs_f32s(x);
    // |x| < 0.84375: x + x·P(x²)/Q(x²).
    let z = s.mul_f32s(ax, ax);
    let small = s.mul_add_e_f32s(ax, s.div_f32s(poly(s, z, &PP), poly(s, z, &QQ)), ax);
    // [0.84375, 1.25): erx + P(|x| − 1)/Q(|x| − 1).
    let t = s.sub_f32s(ax, one);
    let mid = s.add_f32s(
        s.splat_f32s(ERX),
        s.div_f32s(poly(s, t, &PA), poly(s, t, &QA)),
    );
    // [1.25, 6): 1 − e^(−z² − 0.5625)·e^((z − |x|)(z + |x|) + R/S)/|x|, z = |x| with its low
    // 13 bits cleared so that z² is exact; R/S in 1/x², one fit either side of 1/0.35.
    let axf = s.min_f32s(s.max_f32s(ax, s.splat_f32s(1.25)), s.splat_f32s(6.0));
    let w = s.div_f32s(one, s.mul_f32s(axf, axf));
    let near = s.less_than_f32s(axf, s.splat_f32s(f32::from_bits(0x4036_db6d)));
    let r = s.select_f32s(near, poly(s, w, &RA), poly(s, w, &RB));
    let q = s.select_f32s(near, poly(s, w, &SA), poly(s, w, &SB));
    let zt =
        s.transmute_f32s_u32s(s.and_u32s(s.transmute_u32s_f32s(axf), s.splat_u32s(0xffff_e000)));
    let e1 = exp(
        s,
        s.sub_f32s(s.neg_f32s(s.mul_f32s(zt, zt)), s.splat_f32s(0.5625)),
    );
    let arg = s.add_f32s(
        s.mul_f32s(s.sub_f32s(zt, axf), s.add_f32s(zt, axf)),
        s.div_f32s(r, q),
    );
    let erfc = s.div_f32s(s.mul_f32s(e1, exp(s, arg)), axf);
    let far = s.sub_f32s(one, erfc);
    let y = s.select_f32s(
        s.less_than_f32s(ax, s.splat_f32s(0.84375)),
        small,
        s.select_f32s(
            s.less_than_f32s(ax, s.splat_f32s(1.25)),
            mid,
            s.select_f32s(s.less_than_f32s(ax, s.splat_f32s(6.0)), far, one),
        ),
    );
    // erf is odd: x's sign onto |erf|; NaN in, NaN out.
    let sign = s.and_u32s(s.transmute_u32s_f32s(x), s.splat_u32s(0x8000_0000));
    let y = s.transmute_f32s_u32s(s.or_u32s(s.transmute_u32s_f32s(y), sign));
    s.select_f32s(s.equal_f32s(x, x), y, x)
}

const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π), as `ops::activation` writes it.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// GELU(x) = (x/2)·(1 + erf(x/√2)), in `ops::activation::gelu`'s order of operations.
#[inline(always)]
pub(crate) fn gelu<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let e = erf(s, s.mul_f32s(x, s.splat_f32s(FRAC_1_SQRT_2)));
    s.mul_f32s(
        s.mul_f32s(s.splat_f32s(0.5), x),
        s.add_f32s(s.splat_f32s(1.0), e),
    )
}

/// GELU'(x) = Φ(x) + x·φ(x), in `ops::activation::gelu_grad`'s order of operations.
#[inline(always)]
pub(crate) fn gelu_grad<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let e = erf(s, s.mul_f32s(x, s.splat_f32s(FRAC_1_SQRT_2)));
    let cdf = s.mul_f32s(s.splat_f32s(0.5), s.add_f32s(s.splat_f32s(1.0), e));
    let h = s.mul_f32s(s.mul_f32s(s.splat_f32s(-0.5), x), x);
    let pdf = s.mul_f32s(exp(s, h), s.splat_f32s(FRAC_1_SQRT_2PI));
    s.add_f32s(cdf, s.mul_f32s(x, pdf))
}

/// x[i] = f(x[i]) over whole registers, the tail through a partial one.
#[inline(always)]
pub(crate) fn map<S: Simd>(s: S, x: &mut [f32], f: impl Fn(S::f32s) -> S::f32s) {
    let (body, tail) = S::as_mut_simd_f32s(x);
    for v in body {
        *v = f(*v);
    }
    if !tail.is_empty() {
        let v = f(s.partial_load_f32s(tail));
        s.partial_store_f32s(tail, v);
    }
}

/// y[i] = f(x[i], y[i]) over whole registers, the tail through a partial one.
#[inline(always)]
pub(crate) fn zip_map<S: Simd>(
    s: S,
    x: &[f32],
    y: &mut [f32],
    f: impl Fn(S::f32s, S::f32s) -> S::f32s,
) {
    assert_eq!(x.len(), y.len());
    let (xb, xt) = S::as_simd_f32s(x);
    let (yb, yt) = S::as_mut_simd_f32s(y);
    for (v, &u) in yb.iter_mut().zip(xb) {
        *v = f(u, *v);
    }
    if !yt.is_empty() {
        let v = f(s.partial_load_f32s(xt), s.partial_load_f32s(yt));
        s.partial_store_f32s(yt, v);
    }
}
