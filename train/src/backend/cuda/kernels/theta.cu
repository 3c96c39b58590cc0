// Θ over rows of n scores (one block per row), kind 0 = l2_norm_gelu, 1 = gelu_l2_norm,
// 2 = softmax; sqrt_n is √scale_n (the kept scale). Mirrors core/src/ops/theta.rs.
extern "C" __global__ void theta_forward(const float* a, unsigned long long n, int kind,
                                         double sqrt_n, float* s) {
    __shared__ double sh[BLOCK];
    __shared__ float shf[BLOCK];
    const float* ar = a + blockIdx.x * n;
    float* sr = s + blockIdx.x * n;
    if (kind == 2) {
        float m = NEG_INF;
        for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) m = fmaxf(m, ar[j]);
        m = block_max(m, shf);
        double sum = 0.0;
        for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) sum += (double)expf(ar[j] - m);
        float f = (float)((double)n / block_sum(sum, sh));
        for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) sr[j] = expf(ar[j] - m) * f;
        return;
    }
    double ss = 0.0;
    for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) {
        float v = kind == 1 ? gelu(ar[j]) : ar[j];
        ss += (double)v * (double)v;
    }
    ss = block_sum(ss, sh);
    float f = ss != 0.0 ? (float)(sqrt_n / sqrt(ss)) : 0.0f;
    for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) {
        if (ss == 0.0) sr[j] = 0.0f;
        else if (kind == 0) sr[j] = gelu(ar[j] * f);
        else sr[j] = gelu(ar[j]) * f;
    }
}

// da from ds given the scores a and s = Θ(a).
extern "C" __global__ void theta_backward(const float* a, const float* s, const float* ds,
                                          unsigned long long n, int kind, double sqrt_n, float* da) {
    __shared__ double sh[BLOCK];
    unsigned long long off = blockIdx.x * n;
    const float *ar = a + off, *sr = s + off, *gr = ds + off;
    float* o = da + off;
    if (kind == 2) {
        // s = n·softmax(a): da_j = s_j·(ds_j − (1/n)·Σ ds_i s_i).
        double dot = 0.0;
        for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) dot += (double)sr[j] * (double)gr[j];
        float c = (float)(block_sum(dot, sh) / (double)n);
        for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) o[j] = sr[j] * (gr[j] - c);
        return;
    }
    double ss = 0.0;
    for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) {
        float v = kind == 1 ? gelu(ar[j]) : ar[j];
        ss += (double)v * (double)v;
    }
    ss = block_sum(ss, sh);
    if (ss == 0.0) {
        for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) o[j] = 0.0f;
        return;
    }
    float f = (float)(sqrt_n / sqrt(ss));
    double proj = 0.0;
    for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) {
        if (kind == 0) proj += (double)(gr[j] * gelu_grad(ar[j] * f)) * (double)ar[j];
        else proj += (double)gelu(ar[j]) * (double)gr[j];
    }
    float c = (float)(block_sum(proj, sh) / ss);
    for (unsigned long long j = threadIdx.x; j < n; j += BLOCK) {
        if (kind == 0) o[j] = f * (gr[j] * gelu_grad(ar[j] * f) - ar[j] * c);
        else o[j] = f * (gr[j] - gelu(ar[j]) * c) * gelu_grad(ar[j]);
    }
}
