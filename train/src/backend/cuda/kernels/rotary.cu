// Partial rotary in place: one thread per (row, head, pair); the angles of position r % seq
// come from the cos / sin tables [seq, half]; inverse rotates by the negated angles.
extern "C" __global__ void rotary(float* x, unsigned long long rows, unsigned long long seq,
                                  unsigned long long d, unsigned long long head_dim,
                                  unsigned long long half, const float* cos_t, const float* sin_t,
                                  int inverse) {
    unsigned long long heads = d / head_dim;
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= rows * heads * half) return;
    unsigned long long j = i % half, h = (i / half) % heads, r = i / (half * heads);
    unsigned long long p = r % seq;
    float c = cos_t[p * half + j], s = sin_t[p * half + j];
    if (inverse) s = -s;
    float* hx = x + r * d + h * head_dim;
    float a = hx[j], b = hx[half + j];
    hx[j] = a * c - b * s;
    hx[half + j] = b * c + a * s;
}
