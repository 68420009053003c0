// Package memplan estimates the peak GPU and host memory of a generation
// before anything loads, so a run that cannot fit is refused at once with
// the options that would fit, instead of failing minutes in.
//
// The GPU figures model the CUDA backend: its pool rounds every
// allocation to a size class (internal/sizeclass) and the peak is the pool's
// high-water mark of bytes in live tensors (what `bench` reports as
// "peak"). Weights are counted tensor by tensor as the loaders upload
// them (wan.DeviceTensors; the VAE and umT5 lists); the DiT forward's
// activations follow models/wan/forward.go and the temporaries of the
// CUDA ops it calls (ops_sla.go, ops_int8.go, cublaslt.go), op by op, in
// closed form (DiTForward). The VAE's chunked decode and encode are linear
// in the frame area (their causal caches and chunk activations both are)
// with per-pixel costs fitted to GPU measurements (VAEDecode, VAEEncode).
// `bench memory` prints estimate against measurement for each part on the
// GPU (H200, docs/perf-logs/2026-12-04-lora-memory: every DiT figure within
// 0.4%, the VAE's within 1%).
package memplan

import (
	"fmt"
	"os"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/sizeclass"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// GiB is 2³⁰ bytes.
const GiB = 1 << 30

// bytesOf is the pool size of a tensor of dtype dt and shape.
func bytesOf(dt tensor.DType, shape ...int) int64 {
	return sizeclass.Round(int64(tensor.NumElements(shape)) * int64(dt.Size()))
}

// sumTensors is the pool size of a list of tensors.
func sumTensors(ts []checkpoint.Info) int64 {
	var n int64
	for _, t := range ts {
		n += bytesOf(t.DType, t.Shape...)
	}
	return n
}

// CublasWorkspace is the cuBLASLt workspace the CUDA backend allocates at
// its first GEMM and keeps (backend/cuda/cublaslt.go).
const CublasWorkspace = 32 << 20

// DiTWeights is the device memory of a DiT's weights loaded with opt.
func DiTWeights(fi wan.FileInfo, opt wan.Options) (int64, error) {
	ts, err := wan.DeviceTensors(fi, opt)
	if err != nil {
		return 0, err
	}
	return sumTensors(ts), nil
}

// DiTText is the device memory of one embedded text context (EmbedText):
// the context and every block's cross-attention keys and values.
func DiTText(c wan.Config, dt tensor.DType) int64 {
	return int64(1+2*c.Layers) * bytesOf(dt, c.TextLen, c.Dim)
}

// Tokens is the DiT sequence length of a video: latent frames × patches.
func Tokens(width, height, frames int) int {
	return (1 + (frames-1)/4) * (height / 16) * (width / 16)
}

// Forward is the DiT forward's device memory beyond weights and texts.
type Forward struct {
	RoPE        int64 // the RoPE angle table, cached by the model per grid
	Activations int64 // high-water mark of the forward's own tensors
	Where       string
	// Attention, FFN and Head are the high-water marks of the
	// self-attention, the FFN sublayer and the output head (Activations is
	// the largest).
	Attention, FFN, Head int64
}

// DiTForward models one DiT forward on the CUDA backend for L tokens
// (models/wan/forward.go with the backend's fused ops: LinearGELU,
// RMSNormRoPE, AddLayerNorm, LayerNormModulate, and for int8 checkpoints
// the quantised-activation ops). With u one [L, D] activation and f one
// [L, FFN] activation (pool classes), a block holds:
//
//   - self-attention, dense: the residual x, its modulated norm a, q, k,
//     v and the output: 6u;
//   - self-attention, SLA/SageSLA (ops_sla.go slaRun): x, a, q, k, v, the
//     block selection's LUT [H, Qb, Kb] int32 and counts and, for SageSLA,
//     the int8 q and k and e4m3 Vᵀ copies (1.5u, made first), then the
//     fused linear branch's output and the sparse kernel's: 7u (SageSLA
//     8.5u). With TURBODIFFUSION_SLA_LINEAR=unfused the linear branch's
//     five [L, D] tensors (φ(q), φ(k)ᵀ, vᵀ, φ(q)·KV and its normalised
//     output) are live beside the copies instead: 10u (11.5u). The fused
//     branch is the default wherever its start-up check passes; a device
//     where it fails runs the unfused one, 3u more than planned, and a
//     GPU before sm_89 keeps SageSLA's V copy in bf16 (0.5u more);
//   - the FFN: x2, its modulated norm, GELU(W₀·) (fused) and W₂'s output:
//     3u + f; unfused (ExactRounding, float32 model) the pre-GELU output
//     is live with the GELU's: 3u + 2f;
//   - int8 checkpoints: the normed activations travel as int8 codes (a
//     half u), so attention holds 5.5u (SLA 6.5u, SageSLA 8u), and the
//     FFN's first Linear, GELU and quantiser (Int8LinearGELUQ) hold x2,
//     the codes of its input, its bf16 output and the GELU's codes:
//     1.5u + 1.5f; with TURBODIFFUSION_INT8_FUSE=0 the GELU is a separate
//     pass: 1.5u + 2.5f.
//
// After the blocks the head holds the stream, its LayerNorm, that in
// float32 and modulated (2u + 4u in bf16, the most for a -quant 14B with
// dense attention), and the patchified input is live throughout. Checked
// against the CUDA backend's own pool run on a fake driver
// (backend/cuda TestPlannerMatchesPool: within 0.2% for every attention,
// dtype and --offload) and against GPU measurements (TestMeasuredPeaks).
func DiTForward(c wan.Config, opt wan.Options, quantized bool, L int) Forward {
	return ditForward(c, opt, quantized, L, codePaths())
}

// paths are the CUDA backend's code paths a forward's memory depends on.
type paths struct {
	int8 int // int8Plain, int8Fused, int8Unfused
	sla  int // slaBefore, slaFused, slaUnfused
}

// int8 activation paths of the CUDA backend (backend/cuda/ops_int8_fused.go).
const (
	int8Plain   = iota // codes made by each Int8Linear (the code of fe89c6d, before the fused ops)
	int8Fused          // quantised activations, GELU fused into the quantiser (default)
	int8Unfused        // quantised activations, TURBODIFFUSION_INT8_FUSE=0
)

// SLA paths of the CUDA backend (backend/cuda/ops_sla.go slaRun).
const (
	// slaBefore: the unfused linear branch, then SageSLA's copies (the
	// code of the measurements before the fused branch, 727687a and
	// earlier).
	slaBefore  = iota
	slaFused   // block map and copies, then the fused linear branch (default)
	slaUnfused // block map and copies, then the unfused branch (TURBODIFFUSION_SLA_LINEAR=unfused)
)

// codePaths are the paths the CUDA backend takes in this process.
func codePaths() paths {
	p := paths{int8: int8Fused, sla: slaFused}
	if os.Getenv("TURBODIFFUSION_INT8_FUSE") == "0" {
		p.int8 = int8Unfused
	}
	if os.Getenv("TURBODIFFUSION_SLA_LINEAR") == "unfused" {
		p.sla = slaUnfused
	}
	return p
}

func ditForward(c wan.Config, opt wan.Options, quantized bool, L int, cp paths) Forward {
	dt := opt.DType
	if dt == tensor.Invalid {
		dt = tensor.BF16
	}
	u := bytesOf(dt, L, c.Dim)
	u16 := bytesOf(tensor.BF16, L, c.Dim)
	f := bytesOf(dt, L, c.FFNDim)
	codesU, codesF := bytesOf(tensor.I8, L, c.Dim), bytesOf(tensor.I8, L, c.FFNDim)
	actCodes := quantized && dt == tensor.BF16 && cp.int8 != int8Plain
	fr := Forward{RoPE: bytesOf(tensor.F32, L, c.HeadDim/2)}

	a := u // the normed activation feeding q/k/v
	if actCodes {
		a = codesU
	}
	attn, where := 5*u+a, "self-attention"
	if opt.Attention != backend.Dense {
		bq, bk := opt.BlockQ, opt.BlockK
		sage := opt.Attention == backend.SageSLA
		if bq == 0 || bk == 0 {
			bq, bk = 128, 64
			if sage {
				bq, bk = 64, 128
			}
		}
		qb, kb := (L+bq-1)/bq, (L+bk-1)/bk
		sel := bytesOf(tensor.I32, c.Heads, qb, kb) + bytesOf(tensor.I32, c.Heads, qb) + bytesOf(tensor.F64, c.Heads, 128)
		// x, a, q, k, v in the model dtype; float32 inputs are cast to bf16
		// copies first.
		in := 4*u + a + sel
		if dt != tensor.BF16 {
			in += 3 * u16
		}
		// SageSLA: int8 q and k, e4m3 Vᵀ with the keys padded to whole
		// blocks, and their scales.
		var copies int64
		if sage {
			copies = 2*codesU + bytesOf(tensor.I8, c.Dim, kb*bk) +
				bytesOf(tensor.F32, c.Heads, qb) + bytesOf(tensor.F32, c.Heads, kb) + bytesOf(tensor.F32, c.Dim)
		}
		out := u16 + u // the linear branch's output (bf16) and the sparse kernel's
		switch cp.sla {
		case slaBefore:
			attn = max(in+5*u16, in+copies+out)
		case slaUnfused:
			attn = in + copies + 5*u16
		default:
			attn = in + copies + out
		}
		where = "SLA attention"
		if cp.sla != slaFused {
			where = "SLA linear branch"
		}
	}
	var ffn int64
	switch {
	case actCodes && cp.int8 == int8Fused:
		ffn = u + codesU + f + codesF
	case actCodes:
		ffn = u + codesU + 2*f + codesF
	case dt == tensor.BF16 && !opt.ExactRounding && !quantized:
		ffn = 3*u + f
	default:
		ffn = 3*u + 2*f
	}
	// The head (a float32 region): the residual stream, its LayerNorm in
	// the model dtype, that cast to float32, its modulation and the head
	// Linear's float32 output.
	u32 := bytesOf(tensor.F32, L, c.Dim)
	head := u + u32 + bytesOf(tensor.F32, L, c.HeadOut())
	if dt != tensor.F32 {
		head += u + u32
	}
	// The patchified latent the forward starts from stays live throughout.
	in := bytesOf(dt, L, c.PatchDim())
	attn, ffn, head = attn+in, ffn+in, head+in
	fr.Attention, fr.FFN, fr.Head = attn, ffn, head
	fr.Activations, fr.Where = attn, where
	if ffn > fr.Activations {
		fr.Activations, fr.Where = ffn, "FFN"
	}
	if head > fr.Activations {
		fr.Activations, fr.Where = head, "head"
	}
	return fr
}

// VAE figures. The decode and encode run chunk by chunk (one latent frame,
// four video frames), so their memory depends on the frame area, not the
// frame count: the causal convolutions' caches (two frames per layer) and
// one chunk's activations, both linear in width × height, plus the Hopper
// convolution's packed copies of the same shapes. Both are fitted to the
// pool peaks measured on an H200 at 832×480 and 1280×720, bf16 (`bench
// memory`, docs/perf-logs/2026-12-04-lora-memory): decode 3.233 and
// 7.396 GiB, encode 2.510 and 5.741 GiB beyond the weights.
const (
	vaeDecodePerPixel = 8559
	vaeDecodeBase     = 51 << 20
	vaeEncodePerPixel = 6643
	vaeEncodeBase     = 40 << 20
)

// Wan21VAE is the released Wan2.1 VAE's configuration (the default).
var Wan21VAE = wanvae.Config{Dim: 96, ZDim: 16}

func vaeOrDefault(c wanvae.Config) wanvae.Config {
	if c.Dim == 0 {
		return Wan21VAE
	}
	return c
}

// VAEWeights is the device memory of a VAE of configuration c (zero: the
// Wan2.1 VAE) in bf16: its convolution weights and biases, norm scales.
func VAEWeights(c wanvae.Config) int64 {
	var n int64
	for _, t := range wanvae.Tensors(vaeOrDefault(c)) {
		n += bytesOf(tensor.BF16, t.Shape...)
	}
	return n
}

// VAEDecode is the decode's device memory beyond its weights for video
// frames of width × height: the activations (fitted; they scale with the
// base width) and the decoder's repacked conv weights (VAERepacked), which
// the first decode makes.
func VAEDecode(c wanvae.Config, width, height int) int64 {
	c = vaeOrDefault(c)
	return (vaeDecodeBase+int64(vaeDecodePerPixel)*int64(width*height))*int64(c.Dim)/96 + VAERepacked(c)
}

// VAERepacked is what stays beside a VAE's weights once it has decoded:
// the decoder's conv weights repacked for the GPU convolutions (cached per
// model, backend.Constants), input channels rounded up to 32 where the
// mma.sync kernel takes them.
func VAERepacked(c wanvae.Config) int64 {
	var n int64
	for _, t := range wanvae.Tensors(vaeOrDefault(c)) {
		dec := strings.HasPrefix(t.Name, "decoder.") || strings.HasPrefix(t.Name, "conv2.")
		if !dec || !strings.HasSuffix(t.Name, ".weight") || len(t.Shape) < 2 {
			continue
		}
		sh := append([]int(nil), t.Shape...)
		sh[1] = (sh[1] + 31) / 32 * 32
		n += bytesOf(tensor.BF16, sh...)
	}
	return n
}

// VAEEncode is the encode's device memory beyond its weights for frames of
// width × height.
func VAEEncode(c wanvae.Config, width, height int) int64 {
	c = vaeOrDefault(c)
	return (vaeEncodeBase + int64(vaeEncodePerPixel)*int64(width*height)) * int64(c.Dim) / 96
}

func umt5OrDefault(c umt5.Config) umt5.Config {
	if c.Dim == 0 {
		return umt5.XXL
	}
	return c
}

// TextEncoderWeights is the device memory of a umT5 encoder of
// configuration c (zero: umT5-XXL) in bf16; its token embedding and
// relative-position tables stay on the host.
func TextEncoderWeights(c umt5.Config) int64 {
	var n int64
	for _, t := range umt5.Tensors(umt5OrDefault(c)) {
		if strings.Contains(t.Name, "token_embedding") || strings.Contains(t.Name, "pos_embedding") {
			continue
		}
		n += bytesOf(tensor.BF16, t.Shape...)
	}
	return n
}

// TextEncoderHost is the host memory a loaded umT5 keeps: the bf16 token
// embedding (read from the file and kept) and the float32 relative-position
// tables.
func TextEncoderHost(c umt5.Config) int64 {
	c = umt5OrDefault(c)
	return int64(c.Vocab)*int64(c.Dim)*2 + int64(c.Layers)*int64(c.Buckets*c.Heads)*4
}

// TextEncode is the device memory of one encode of 512 tokens beyond the
// weights: about four [512, D] activations (residual, q/k/v or the norm)
// and two of the gated FFN's [512, FFN] ones live at once (measured 33.8
// MiB for umT5-XXL; this gives 36 MiB).
func TextEncode(c umt5.Config) int64 {
	c, l := umt5OrDefault(c), 512
	return 4*bytesOf(tensor.BF16, l, c.Dim) + 2*bytesOf(tensor.BF16, l, c.FFN)
}

// Part is one named contribution to a stage's peak.
type Part struct {
	Name  string
	Bytes int64
}

// Stage is one phase of a run and its peak device memory.
type Stage struct {
	Name  string
	Parts []Part
}

// Bytes is the stage's total.
func (s Stage) Bytes() int64 {
	var n int64
	for _, p := range s.Parts {
		n += p.Bytes
	}
	return n
}

func (s Stage) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (", s.Name, FormatGiB(s.Bytes()))
	for i, p := range s.Parts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", p.Name, FormatGiB(p.Bytes))
	}
	b.WriteString(")")
	return b.String()
}

// FormatGiB is e.g. "29.1 GiB".
func FormatGiB(n int64) string {
	g := float64(n) / GiB
	switch {
	case g >= 10:
		return fmt.Sprintf("%.1f GiB", g)
	case g >= 0.1:
		return fmt.Sprintf("%.2f GiB", g)
	}
	if n >= 10<<20 {
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
