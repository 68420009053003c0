// elementwise.cu: casts, broadcast binary ops, unary activations, and the
// DiT's modulation and gated residual. Operand dtypes are run-time codes
// (common.cuh); every result is computed in float32 and rounded once.
#include "common.cuh"

extern "C" __global__ void cast_kernel(void* dst, int ddt, const void* src, int sdt, long long n) {
  GRID_STRIDE(i, n) stv(dst, ddt, i, ldv(src, sdt, i));
}

// op 0: add, 1: mul. b broadcasts over a's leading dims (nb divides n).
extern "C" __global__ void binop_kernel(void* out, const void* a, int adt, const void* b, int bdt,
                                        long long n, long long nb, int op) {
  GRID_STRIDE(i, n) {
    float x = ldv(a, adt, i), y = ldv(b, bdt, i % nb);
    stv(out, adt, i, op == 0 ? x + y : x * y);
  }
}

// op 0: x*s, 1: SiLU, 2: GELU (tanh approximation).
extern "C" __global__ void unary_kernel(void* out, const void* x, int dt, long long n, int op, float s) {
  GRID_STRIDE(i, n) {
    float v = ldv(x, dt, i), r;
    if (op == 0) {
      r = v * s;
    } else if (op == 1) {
      r = v / (1.f + expf(-v));
    } else {
      const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
      r = 0.5f * v * (1.f + tanhf(k0 * (v + 0.044715f * v * v * v)));
    }
    stv(out, dt, i, r);
  }
}

// out = x*(1+scale)+shift in float32 (product and sum rounded separately,
// no FMA, as PyTorch computes it), rounded to x's dtype. shift and scale have
// nv elements: a suffix of x's shape ([D] or per-token [L, D]).
extern "C" __global__ void modulate_kernel(void* out, const void* x, int dt, const void* shift, int shdt,
                                           const void* scale, int scdt, long long n, long long nv) {
  GRID_STRIDE(i, n) {
    long long c = i % nv;
    float v = ldv(x, dt, i);
    stv(out, dt, i, __fadd_rn(__fmul_rn(v, 1.f + ldv(scale, scdt, c)), ldv(shift, shdt, c)));
  }
}

// BF16: out = x + bf16(y * bf16(gate)), as TD's `x + y * e.type_as(x)`.
// F32: out = x + y*gate. gate has nv elements (a suffix of x's shape).
extern "C" __global__ void gated_add_kernel(void* out, const void* x, int dt, const void* y, int ydt,
                                            const void* gate, int gdt, long long n, long long nv) {
  GRID_STRIDE(i, n) {
    float g = rdt(dt, ldv(gate, gdt, i % nv));
    float p = rdt(dt, __fmul_rn(ldv(y, ydt, i), g));
    stv(out, dt, i, __fadd_rn(ldv(x, dt, i), p));
  }
}

// out[r, c] = acc[r, c] + bias[c], one rounding: the bias epilogue for GEMMs
// whose bias dtype cuBLASLt does not take.
extern "C" __global__ void bias_add_kernel(void* out, int odt, const float* acc, const void* bias, int bdt,
                                           long long n, int N) {
  GRID_STRIDE(i, n) stv(out, odt, i, acc[i] + ldv(bias, bdt, i % N));
}
