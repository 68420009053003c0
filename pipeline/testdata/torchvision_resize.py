# Writes torchvision_resize.safetensors: small uint8 RGB images and what the
# reference's I2V preprocessing resize, torchvision.transforms.v2
# Resize((h, w), antialias=True) on the uint8 CPU tensor of
# PIL convert("RGB"), makes of them (down, up, mixed and one-axis factors).
# Run once with torch/torchvision (here: torch 2.11.0, torchvision 0.26.0,
# CPU capability AVX512); the Go test reads only the output file.
import sys

import numpy as np
import torch
import torchvision.transforms.v2 as T
from PIL import Image
from safetensors.torch import save_file

cases = [((64, 48), (24, 20)), ((40, 30), (96, 64)), ((50, 20), (16, 48)), ((33, 47), (32, 32)),
         ((61, 17), (61, 40)), ((127, 9), (48, 16))]
rng = np.random.default_rng(20251204)
out = {}
for i, ((w0, h0), (w, h)) in enumerate(cases):
    yy, xx = np.mgrid[0:h0, 0:w0]
    smooth = 127 + 100 * np.sin(xx[..., None] / 7.0 + np.arange(3)) * np.cos(yy[..., None] / 5.0)
    img = np.clip(smooth + rng.normal(0, 30, size=(h0, w0, 3)), 0, 255).astype(np.uint8)
    resized = T.Resize(size=(h, w), antialias=True)(T.ToImage()(Image.fromarray(img, "RGB")))
    assert resized.dtype == torch.uint8
    out[f"case{i}.input"] = torch.from_numpy(img).contiguous()
    out[f"case{i}.resized"] = resized.permute(1, 2, 0).contiguous()
save_file(out, sys.argv[1] if len(sys.argv) > 1 else "torchvision_resize.safetensors")
print(torch.__version__, torch.backends.cpu.get_cpu_capability(), len(cases), "cases")
