// out[r] = table[tokens[r]]: one thread per element.
extern "C" __global__ void embed_forward(const float* table, const unsigned int* tokens,
                                         unsigned long long rows, unsigned long long d, float* out) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= rows * d) return;
    unsigned long long r = i / d, j = i % d;
    out[i] = table[tokens[r] * d + j];
}

// dtable[tokens[r]] += dout[r]: one thread per column, walking the rows in order, so repeated
// tokens add in a fixed order and no two threads touch the same element.
extern "C" __global__ void embed_backward(const unsigned int* tokens, const float* dout,
                                          unsigned long long rows, unsigned long long d, float* dtable) {
    unsigned long long j = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (j >= d) return;
    for (unsigned long long r = 0; r < rows; r++) dtable[tokens[r] * d + j] += dout[r * d + j];
}
