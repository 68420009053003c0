// rcm.cu: the rCM sampler's elementwise steps on its float64 state
// (backend.RCMOps). Each matches sampler/rcm.go bit for bit: explicit _rn
// intrinsics keep the compiler from contracting a product and a sum into
// one fused multiply-add, which the host loop does not do.
#include "common.cuh"

// x = double(eps) * s0.
extern "C" __global__ void rcm_init_kernel(double* x, const float* eps, long long n, double s0) {
  GRID_STRIDE(i, n) { x[i] = __dmul_rn((double)eps[i], s0); }
}

// out = dt(float(x)): float64 -> float32 -> dt, each to nearest even.
extern "C" __global__ void rcm_input_kernel(void* out, int dt, const double* x, long long n) {
  GRID_STRIDE(i, n) { stv(out, dt, i, __double2float_rn(x[i])); }
}

// SDE: x = keep*(x - cur*v) + double(nextf*eps), keep = 1 - next (host).
extern "C" __global__ void rcm_sde_kernel(double* x, const float* v, const float* eps, long long n, double cur,
                                          double keep, float nextf) {
  GRID_STRIDE(i, n) {
    double x0 = __dsub_rn(x[i], __dmul_rn(cur, (double)v[i]));
    x[i] = __dadd_rn(__dmul_rn(keep, x0), (double)__fmul_rn(nextf, eps[i]));
  }
}

// ODE: x = x - dt*v, dt = cur - next (host).
extern "C" __global__ void rcm_ode_kernel(double* x, const float* v, long long n, double dt) {
  GRID_STRIDE(i, n) { x[i] = __dsub_rn(x[i], __dmul_rn(dt, (double)v[i])); }
}
