//! GELU, exact erf form (the reference code uses `F.gelu` without the tanh approximation).

const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;

/// GELU(x) = x · Φ(x), exact erf form.
#[inline]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * FRAC_1_SQRT_2))
}

/// dGELU/dx = Φ(x) + x·φ(x).
#[inline]
pub fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2));
    let pdf = libm::expf(-0.5 * x * x) * 0.398_942_3; // 1/√(2π)
    cdf + x * pdf
}
