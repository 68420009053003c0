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

// The packed layout of TAEHV's chained convolutions (conv3d_sm90a.cu,
// ycl): [rows][C] bf16, channels last, frame t, row h, column w at row
// ((t+1)·(H+2) + h+1)·(W+2) + w+1, every other row zero (a leading zero
// frame and one-pixel borders). taehv_unpack_kernel copies the frames out
// channel-first [C,T,H,W]: the fallback where a packed tensor meets a
// convolution that cannot read it.
extern "C" __global__ void taehv_unpack_kernel(bf16* X, const bf16* Xp, int C, int T, int H, int W) {
  const long long n = (long long)C * T * H * W;
  GRID_STRIDE(i, n) {
    const int w = (int)(i % W);
    long long q = i / W;
    const int h = (int)(q % H);
    q /= H;
    const int t = (int)(q % T), c = (int)(q / T);
    const long long row = ((long long)(t + 1) * (H + 2) + h + 1) * (W + 2) + w + 1;
    X[i] = Xp[row * C + c];
  }
}
