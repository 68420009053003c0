// taehv.cu: the tiny VAE's elementwise ops (backend.TinyVAEOps); its
// convolutions run on conv3d_sm90a.cu (grow, upsampling, residual and ReLU
// fused) or the VAE's other conv kernels.
#include "common.cuh"

// op 0: ReLU max(x, 0) (-0 to +0, NaN kept); 1: a·tanh(x/a); 2: clamp to
// [a, b] (NaN kept). Computed in float32, rounded once to dt.
extern "C" __global__ void taehv_act_kernel(void* out, const void* x, int dt, long long n, int op, float a, float b) {
  GRID_STRIDE(i, n) {
    const float v = ldv(x, dt, i);
    float r;
    if (op == 0) {
      r = v <= 0.f ? 0.f : v;
    } else if (op == 1) {
      r = a * tanhf(v / a);
    } else {
      r = v < a ? a : (v > b ? b : v);
    }
    stv(out, dt, i, r);
  }
}
