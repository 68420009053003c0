"""Writes pickle_proto<N>.pth: torch.save-shaped archives pickled by
CPython's own pickler at protocols 1-5, without torch. Stand-in objects are
registered under torch's module and class names so the pickles name the
same globals torch.save writes. The Go tests know the expected contents
(see pth_pickle_test.go). Run: python3 gen_pickles.py (from this folder)."""
import collections, io, pickle, struct, sys, types, zipfile

torch = types.ModuleType("torch"); sys.modules["torch"] = torch
utils = types.ModuleType("torch._utils"); sys.modules["torch._utils"] = utils
storage_mod = types.ModuleType("torch.storage"); sys.modules["torch.storage"] = storage_mod
torch._utils = utils

def mk_class(mod, name):
    c = type(name, (), {}); c.__module__ = mod.__name__; c.__qualname__ = name
    setattr(mod, name, c); return c

def mk_func(mod, name):
    f = lambda *a: None; f.__module__ = mod.__name__; f.__qualname__ = f.__name__ = name
    setattr(mod, name, f); return f

BF16 = mk_class(torch, "BFloat16Storage"); F32 = mk_class(torch, "FloatStorage")
I8 = mk_class(torch, "CharStorage"); Untyped = mk_class(storage_mod, "UntypedStorage")
v2 = mk_func(utils, "_rebuild_tensor_v2"); v3 = mk_func(utils, "_rebuild_tensor_v3")
param = mk_func(utils, "_rebuild_parameter")

class DType:
    def __init__(self, name): self.name = name
    def __reduce__(self): return self.name  # pickled as the global torch.<name>
DType.__module__ = "torch"
setattr(torch, "float8_e4m3fn", DType("float8_e4m3fn"))

class Storage:
    def __init__(self, cls, key, numel, data): self.cls, self.key, self.numel, self.data = cls, key, numel, data

class Tensor:
    def __init__(self, fn, args): self.fn, self.args = fn, args
    def __reduce__(self): return (self.fn, self.args)

class Param:
    def __init__(self, t): self.t = t
    def __reduce__(self): return (param, (self.t, False, collections.OrderedDict()))

# storage 0: 12 floats 0..11; storage 1: 6 bf16 (1.0..6.0); storage 2: 4 int8; storage 3: 4 fp8 bytes
s0 = Storage(F32, "0", 12, struct.pack("<12f", *range(12)))
s1 = Storage(BF16, "1", 6, b"".join(struct.pack("<f", float(i + 1))[2:] for i in range(6)))
s2 = Storage(I8, "2", 4, bytes([0x80, 0xff, 0x00, 0x7f]))
s3 = Storage(Untyped, "3", 4, bytes([0x38, 0x40, 0xb8, 0x00]))  # fp8 e4m3: 1, 2, -1, 0

H = collections.OrderedDict
sd = collections.OrderedDict()
sd["w"] = Tensor(v2, (s1, 0, (2, 3), (3, 1), False, H()))
sd["wt"] = Tensor(v2, (s0, 0, (4, 3), (1, 4), False, H()))        # transposed view of s0 as (3,4)
sd["slice"] = Tensor(v2, (s0, 2, (2,), (3,), False, H()))          # s0[2], s0[5]
sd["scalar"] = Tensor(v2, (s0, 7, (), (), False, H()))
sd["codes"] = Param(Tensor(v2, (s2, 0, (2, 2), (2, 1), True, H())))
sd["fp8"] = Tensor(v3, (s3, 0, (4,), (1,), False, H(), torch.float8_e4m3fn))
sd["big"] = Tensor(v2, (s0, 0, (3, 4), (4, 1), False, H()))
sd["note"] = "not a tensor"

for proto in range(1, 6):
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=proto)
    seen = {}
    def pid(obj):
        if isinstance(obj, Storage):
            seen[obj.key] = obj
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None
    p.persistent_id = pid
    p.dump(sd)
    name = f"pickle_proto{proto}"
    with zipfile.ZipFile(f"{name}.pth", "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", buf.getvalue())
        z.writestr(f"{name}/byteorder", "little")
        for k, s in sorted(seen.items()):
            z.writestr(f"{name}/data/{k}", s.data)
        z.writestr(f"{name}/version", "3\n")
