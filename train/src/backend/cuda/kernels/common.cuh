// Shared by every kernel family (prepended to each source before NVRTC compiles it).
// Reductions are fixed-order trees over a block of BLOCK threads: no float atomics, so two
// runs give the same bits.
#define BLOCK 256
#define NEG_INF __int_as_float(0xff800000)

// Sum of one value per thread, in a fixed tree order; every thread gets the result.
__device__ double block_sum(double v, double* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

__device__ float block_max(float v, float* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

// GELU, exact erf form, and its derivative Φ(x) + x·φ(x) (core/src/ops/activation.rs).
__device__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678f)); }
__device__ float gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678f));
    return cdf + x * expf(-0.5f * x * x) * 0.3989423f;
}
