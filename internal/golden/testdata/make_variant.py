# make_variant.py SRC DST: copy the conformance set SRC to DST with consistent
# slices where the math allows (int8 128-tiles M/N, one SLA head, VAE time
# prefix, umT5 sequence prefix), every third tokenizer case and a manifest with
# reversed key order, to check that tests read sizes from the set:
#   python3 internal/golden/testdata/make_variant.py ../shared/golden /tmp/gvariant
#   TURBODIFFUSION_GOLDEN=/tmp/gvariant go test ./...
# internal/golden/reformat makes the other kind of variant: every checkpoint
# in the other container format (.pth <-> safetensors) under the same name.
"""Build a variant of the conformance set: consistent slices of inputs and
outputs where the math allows, a reordered manifest, a subset of tokenizer
cases. Pure Python (no numpy)."""
import json, os, shutil, struct, sys

SRC, DST = sys.argv[1], sys.argv[2]
SIZES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1}

def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    data = b[8 + n:]
    meta = hdr.pop("__metadata__", None)
    ts = {}
    for k, v in hdr.items():
        s, e = v["data_offsets"]
        ts[k] = (v["dtype"], list(v["shape"]), data[s:e])
    return ts, meta, list(hdr.keys())

def write_st(path, ts, order, meta=None):
    hdr, off, blobs = {}, 0, []
    if meta is not None:
        hdr["__metadata__"] = meta
    for k in order:
        dt, shape, raw = ts[k]
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def slice_t(t, ranges):
    """ranges: per axis (start, stop) or None for all."""
    dt, shape, raw = t
    es = SIZES[dt]
    rs = [(0, n) if r is None else r for r, n in zip(ranges + [None] * (len(shape) - len(ranges)), shape)]
    newshape = [b - a for a, b in rs]
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    out = bytearray()
    # iterate over all but the last axis, copy contiguous runs of the last axis
    def rec(ax, base):
        if ax == len(shape) - 1:
            a, b = rs[ax]
            out.extend(raw[(base + a) * es:(base + b) * es])
            return
        a, b = rs[ax]
        for i in range(a, b):
            rec(ax + 1, base + i * strides[ax])
    rec(0, 0)
    return (dt, newshape, bytes(out))

def reverse_keys(o):
    if isinstance(o, dict):
        return {k: reverse_keys(o[k]) for k in reversed(list(o.keys()))}
    if isinstance(o, list):
        return [reverse_keys(x) for x in o]
    return o

if os.path.exists(DST):
    shutil.rmtree(DST)
shutil.copytree(SRC, DST)
man = json.load(open(os.path.join(SRC, "manifest.json")))

def update_manifest(fname, ts):
    ents = man["files"][fname]["tensors"]
    for k, (dt, shape, raw) in ts.items():
        ents[k]["shape"] = shape

# int8: keep the last two 128-row tiles of x (M 300 -> 172, ragged 44) and
# of the weight (N 320 -> 192, ragged 64): whole tiles, so codes and scales
# stay exact, and the output is the matching block of rows and columns.
p = os.path.join(DST, "int8_linear.safetensors")
ts, meta, order = read_st(p)
M0, M1, N0, N1 = 128, 300, 128, 320
ts["x"] = slice_t(ts["x"], [None, (M0, M1)])
ts["x_int8"] = slice_t(ts["x_int8"], [(M0, M1)])
ts["x_scale"] = slice_t(ts["x_scale"], [(M0 // 128, 3)])
ts["weight"] = slice_t(ts["weight"], [(N0, N1)])
ts["weight_int8"] = slice_t(ts["weight_int8"], [(N0, N1)])
ts["weight_scale"] = slice_t(ts["weight_scale"], [(N0 // 128, 3)])
ts["bias"] = slice_t(ts["bias"], [(N0, N1)])
for k in ("y_float_reference", "y_int8_linear", "y_module"):
    ts[k] = slice_t(ts[k], [None, (M0, M1), (N0, N1)])
write_st(p, ts, list(reversed(order)), meta)
update_manifest("int8_linear.safetensors", ts)
for sec in ("configs", "set_config"):
    man[sec]["int8"]["M"] = M1 - M0
    man[sec]["int8"]["N"] = N1 - N0
man["observed"]["int8"]["weight_int8_mismatch_detail"] = [d for d in man["observed"]["int8"]["weight_int8_mismatch_detail"] if d["row"] >= N0]

# umT5: padded keys get exactly zero attention weight and relative positions
# do not depend on the length, so the first 32 of 64 positions (20 valid)
# are the outputs of a 32-token call.
p = os.path.join(DST, "umt5.safetensors")
ts, meta, order = read_st(p)
S = 32
for k in ("ids", "mask"):
    ts[k] = slice_t(ts[k], [None, (0, S)])
for k in ("embedding_bf16", "embedding_fp32", "encoder_out_bf16", "encoder_out_fp32"):
    ts[k] = slice_t(ts[k], [None, (0, S)])
write_st(p, ts, list(reversed(order)), meta)
update_manifest("umt5.safetensors", {k: ts[k] for k in ts if not k.startswith("weight.")})
man["configs"]["umt5"]["seq_len"] = S
man["set_config"]["umt5"]["seq_len"] = S

# SLA unit: keep one head (heads are independent), head 1
p = os.path.join(DST, "sla_unit.safetensors")
ts, meta, order = read_st(p)
h = 1
for k in ("q", "k", "v", "output"):
    ts[k] = slice_t(ts[k], [None, None, (h, h + 1)])
for k in ("o_sparse", "lut", "pooled_score", "sparse_map"):
    ts[k] = slice_t(ts[k], [None, (h, h + 1)])
write_st(p, ts, list(reversed(order)), meta)
update_manifest("sla_unit.safetensors", ts)
man["configs"]["sla_unit"]["H"] = 1
man["set_config"]["sla_unit"]["H"] = 1
man["observed"]["sla_selection"]["sla_unit"]["rows"] = 8

# VAE: causal in time, so the first 2 latent frames <-> the first 5 video frames
p = os.path.join(DST, "vae.safetensors")
ts, meta, order = read_st(p)
for k in ("decode.latent", "encode.latent_fp32", "encode.latent_bf16"):
    ts[k] = slice_t(ts[k], [None, None, (0, 2)])
for k in ("decode.video_fp32", "decode.video_bf16", "encode.video"):
    ts[k] = slice_t(ts[k], [None, None, (0, 5)])
write_st(p, ts, list(reversed(order)), meta)
update_manifest("vae.safetensors", {k: ts[k] for k in ts if not k.startswith("weight.")})
man["set_config"]["vae"]["decode_latent"] = [1, 16, 2, 8, 8]
man["set_config"]["vae"]["encode_video"] = [1, 3, 5, 64, 64]

# tokenizer: every third case
p = os.path.join(DST, "tokenizer", "cases.json")
cases = json.load(open(p))
cases["cases"] = cases["cases"][::3]
json.dump(reverse_keys(cases), open(p, "w"), ensure_ascii=False)

man["set"] = "variant"
json.dump(reverse_keys(man), open(os.path.join(DST, "manifest.json"), "w"), indent=1)
print("variant written to", DST)
