// Row i of each head's [t, t] scores (one block per row, rows of all heads consecutive): the
// causal softmax of row·scale over columns 0..=i, zeros after.
extern "C" __global__ void causal_softmax(float* p, unsigned long long t, float scale) {
    __shared__ double sh[BLOCK];
    __shared__ float shf[BLOCK];
    unsigned long long i = blockIdx.x % t;
    float* row = p + blockIdx.x * t;
    float m = NEG_INF;
    for (unsigned long long j = threadIdx.x; j <= i; j += BLOCK) m = fmaxf(m, row[j] * scale);
    m = block_max(m, shf);
    double sum = 0.0;
    for (unsigned long long j = threadIdx.x; j <= i; j += BLOCK) sum += (double)expf(row[j] * scale - m);
    float inv = (float)(1.0 / block_sum(sum, sh));
    for (unsigned long long j = threadIdx.x; j < t; j += BLOCK)
        row[j] = j <= i ? expf(row[j] * scale - m) * inv : 0.0f;
}

// dS = P ⊙ (dP − Σ_j P dP)·scale over 0..=i, zeros after; dP in ds, replaced in place.
extern "C" __global__ void causal_softmax_backward(float* ds, const float* p, unsigned long long t,
                                                   float scale) {
    __shared__ double sh[BLOCK];
    unsigned long long i = blockIdx.x % t;
    float* g = ds + blockIdx.x * t;
    const float* pr = p + blockIdx.x * t;
    double dot = 0.0;
    for (unsigned long long j = threadIdx.x; j <= i; j += BLOCK) dot += (double)(g[j] * pr[j]);
    float c = (float)block_sum(dot, sh);
    for (unsigned long long j = threadIdx.x; j < t; j += BLOCK)
        g[j] = j <= i ? pr[j] * (g[j] - c) * scale : 0.0f;
}
