// Per row of logits (one block per row): loss = log Σ exp(z − m) + m − z[target] in f64, and
// dlogits = (softmax(z) − onehot(target))·grad_scale.
extern "C" __global__ void cross_entropy(const float* logits, const unsigned int* targets,
                                         unsigned long long vocab, float grad_scale, float* g,
                                         double* losses) {
    __shared__ double sh[BLOCK];
    __shared__ float shf[BLOCK];
    const float* z = logits + blockIdx.x * vocab;
    float* gr = g + blockIdx.x * vocab;
    unsigned int t = targets[blockIdx.x];
    float m = NEG_INF;
    for (unsigned long long j = threadIdx.x; j < vocab; j += BLOCK) m = fmaxf(m, z[j]);
    m = block_max(m, shf);
    double sum = 0.0;
    for (unsigned long long j = threadIdx.x; j < vocab; j += BLOCK) sum += (double)expf(z[j] - m);
    sum = block_sum(sum, sh);
    float inv = (float)(1.0 / sum) * grad_scale;
    for (unsigned long long j = threadIdx.x; j < vocab; j += BLOCK)
        gr[j] = expf(z[j] - m) * inv - (j == t ? grad_scale : 0.0f);
    if (threadIdx.x == 0) losses[blockIdx.x] = log(sum) + (double)m - (double)z[t];
}
