"""Speed probe for issue 13 item 3's FP8 option: on this GPU, time the 1.3B and
14B Linear shapes (M = 32760 tokens at 480p) as bf16 matmul, FP8 e4m3 with
block scales (1x128 on the activation, 128x128 on the weight, cuBLASLt through
torch._scaled_mm) and FP8 with one scale per tensor, and report TFLOP/s and
the relative L2 distance of each to the float32 product of the dequantised
inputs. Not part of the Go build; run on the GPU machine (PyTorch there)."""
import sys
import torch

torch.manual_seed(0)
dev = "cuda"
E4 = torch.float8_e4m3fn
FMAX = torch.finfo(E4).max


def timeit(f, it=20):
    for _ in range(3):
        f()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(it):
        s.record()
        f()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]


def q_rows(x):  # 1x128 blocks along K: [M,K] -> e4m3 [M,K], scales [M,K/128]
    M, K = x.shape
    xb = x.float().view(M, K // 128, 128)
    s = xb.abs().amax(-1).clamp(min=1e-12) / FMAX
    return (xb / s[..., None]).to(E4).view(M, K), s


def q_blocks(w):  # 128x128 blocks: [N,K] -> e4m3, scales [N/128, K/128]
    N, K = w.shape
    wb = w.float().view(N // 128, 128, K // 128, 128)
    s = wb.abs().amax(dim=(1, 3)).clamp(min=1e-12) / FMAX
    return (wb / s[:, None, :, None]).to(E4).view(N, K), s


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


shapes = [(32760, 8960, 1536), (32760, 1536, 1536), (32760, 1536, 8960), (75600, 5120, 5120), (75600, 13824, 5120), (75600, 5120, 13824)]
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())
for M, N, K in shapes:
    x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    w = (torch.randn(N, K, device=dev, dtype=torch.bfloat16) * 0.02)
    fl = 2 * M * N * K
    tb = timeit(lambda: x @ w.t())
    ref = x.float() @ w.float().t()
    line = f"M{M} N{N} K{K}: bf16 {tb:.3f} ms {fl / tb / 1e9:.0f} TFLOP/s rel {rel(x @ w.t(), ref):.2e}"
    xq, sx = q_rows(x)
    wq, sw = q_blocks(w)
    try:
        # cuBLASLt wants the 1x128 scales M-major (outer dim contiguous).
        sxa = sx.t().contiguous().t()
        swb = sw.t().contiguous().t() if False else sw
        f = lambda: torch._scaled_mm(xq, wq.t(), scale_a=sxa, scale_b=swb.t(), out_dtype=torch.bfloat16)
        y = f()
        deq = (xq.float().view(M, K // 128, 128) * sx[..., None]).view(M, K) @ (wq.float().view(N // 128, 128, K // 128, 128) * sw[:, None, :, None]).view(N, K).t()
        tf = timeit(f)
        line += f" | fp8 block {tf:.3f} ms {fl / tf / 1e9:.0f} TFLOP/s vs-dequant {rel(y, deq):.2e} vs-f32 {rel(y, ref):.2e}"
    except Exception as ex:  # noqa: BLE001
        line += f" | fp8 block: {type(ex).__name__}: {str(ex)[:200]}"
    try:
        st = torch.tensor(1.0, device=dev)
        xt, wt = x.to(E4), w.mul(50).to(E4)
        f = lambda: torch._scaled_mm(xt, wt.t(), scale_a=st, scale_b=st, out_dtype=torch.bfloat16)
        tf = timeit(f)
        line += f" | fp8 tensor {tf:.3f} ms {fl / tf / 1e9:.0f} TFLOP/s"
    except Exception as ex:  # noqa: BLE001
        line += f" | fp8 tensor: {type(ex).__name__}: {str(ex)[:200]}"
    print(line, flush=True)
    del x, w, xq, wq
    torch.cuda.empty_cache()
sys.exit(0)
