// y += x
extern "C" __global__ void add_assign(float* y, const float* x, unsigned long long n) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

// x *= s
extern "C" __global__ void scale(float* x, float s, unsigned long long n) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

// One AdamW update (decoupled weight decay), the CPU backend's arithmetic.
extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, unsigned long long n,
                                 float lr, float beta1, float beta2, float eps, float wd,
                                 float bias1, float bias2) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
    v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
    float mh = m[i] / bias1, vh = v[i] / bias2;
    p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
}

// Σ x² in two fixed-order passes: each block sums its `chunk` elements into parts[block], then
// one block sums the parts (same result on every run and every device of the same code).
extern "C" __global__ void sum_squares_parts(const float* x, unsigned long long n,
                                             unsigned long long chunk, double* parts) {
    __shared__ double sh[BLOCK];
    unsigned long long lo = blockIdx.x * chunk, hi = min(lo + chunk, n);
    double s = 0.0;
    for (unsigned long long i = lo + threadIdx.x; i < hi; i += BLOCK) s += (double)x[i] * (double)x[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) parts[blockIdx.x] = s;
}

extern "C" __global__ void sum_parts(const double* parts, unsigned long long n, double* out) {
    __shared__ double sh[BLOCK];
    double s = 0.0;
    for (unsigned long long i = threadIdx.x; i < n; i += BLOCK) s += parts[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[0] = s;
}

// y = bf16(x): round to nearest, ties to even (NaN stays a quiet NaN), stored as the 16 bits
// cuBLAS reads as CUDA_R_16BF. The bf16 mode's operand conversion before each product.
extern "C" __global__ void to_bf16(const float* x, unsigned long long n, unsigned short* y) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned int u = __float_as_uint(x[i]);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        y[i] = (unsigned short)((u >> 16) | 0x40u);
    } else {
        y[i] = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}
