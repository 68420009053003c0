#!/usr/bin/env python3
"""PyTorch baselines for `turbodiffusion bench`, same shapes, same card, same call.

Times with CUDA events after warm-up and reports medians, on random data.
Prints one line per case and writes JSON when --json is given.
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


WARMUP_MS = 0.0


def timeit(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    # Optional: keep the card busy for WARMUP_MS first, so every case is timed
    # at the power-capped steady clock (as `bench --attention-warmup-ms`).
    if WARMUP_MS > 0:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        for _ in range(int(WARMUP_MS / max(a.elapsed_time(b), 1e-3))):
            fn()
        torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return statistics.median(ts), ts[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--L", type=int, default=32760)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--ffn", type=int, default=8960)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", default="")
    ap.add_argument("--warmup-ms", type=float, default=0.0, help="run each case about this long before timing it")
    a = ap.parse_args()
    global WARMUP_MS
    WARMUP_MS = a.warmup_ms
    dev = torch.device("cuda")
    res = []

    def report(name, ms, mn, flops):
        tf = flops / (ms * 1e-3) / 1e12
        res.append({"name": name, "ms_median": ms, "ms_min": mn, "tflops": tf})
        print(f"torch {name:<48} {ms:9.3f} ms (min {mn:8.3f}) {tf:8.1f} TFLOP/s", flush=True)

    from torch.nn.attention import SDPBackend, sdpa_kernel

    for lq, lk, h, d, what in [(a.L, a.L, a.heads, 128, "self"), (a.L, 512, a.heads, 128, "cross"),
                               (a.L, a.L, a.heads * 2, 64, "self")]:
        q = torch.randn(1, h, lq, d, device=dev, dtype=torch.bfloat16)
        k = torch.randn(1, h, lk, d, device=dev, dtype=torch.bfloat16)
        v = torch.randn(1, h, lk, d, device=dev, dtype=torch.bfloat16)
        flops = 4.0 * lq * lk * d * h
        for label, be in [("default", None), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("flash2", SDPBackend.FLASH_ATTENTION)]:
            try:
                if be is None:
                    fn = lambda: F.scaled_dot_product_attention(q, k, v)
                    ms, mn = timeit(fn, a.iters)
                else:
                    with sdpa_kernel([be]):
                        fn = lambda: F.scaled_dot_product_attention(q, k, v)
                        ms, mn = timeit(fn, a.iters)
                report(f"sdpa[{label}] {what} Lq={lq} Lk={lk} h={h} d={d}", ms, mn, flops)
            except Exception as e:  # a backend may refuse a shape
                print(f"torch sdpa[{label}] {what} d={d}: unavailable: {str(e).splitlines()[0][:100]}")
        del q, k, v

    for m, n, k in [(a.L, a.dim, a.dim), (a.L, a.ffn, a.dim), (a.L, a.dim, a.ffn)]:
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) / k ** 0.5
        bias = torch.randn(n, device=dev, dtype=torch.bfloat16)
        ms, mn = timeit(lambda: F.linear(x, w, bias), a.iters)
        report(f"linear bf16+bias M={m} N={n} K={k}", ms, mn, 2.0 * m * n * k)

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": res}, f, indent=2)


if __name__ == "__main__":
    main()
