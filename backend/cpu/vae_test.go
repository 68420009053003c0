package cpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// vaeRand is n bf16-exact standard normal values from its own stream.
func vaeRand(seed uint64, n int) []float32 {
	return randVals(rand.New(rand.NewPCG(seed, 11)), n, 1)
}

// vaeRefConv is a direct float64 convolution with zero padding.
func vaeRefConv(x []float32, xs []int, w []float32, ws []int, bias []float32, p backend.Conv3dParams) ([]float64, []int) {
	os := backend.Conv3dOutShape(xs, ws, p)
	st, sh, sw := p.Strides()
	out := make([]float64, tensor.NumElements(os))
	at := func(c, t, h, w int) float64 {
		t -= p.PadT[0]
		h -= p.PadH[0]
		w -= p.PadW[0]
		if t < 0 || t >= xs[1] || h < 0 || h >= xs[2] || w < 0 || w >= xs[3] {
			return 0
		}
		return float64(x[((c*xs[1]+t)*xs[2]+h)*xs[3]+w])
	}
	i := 0
	for co := 0; co < os[0]; co++ {
		for to := 0; to < os[1]; to++ {
			for ho := 0; ho < os[2]; ho++ {
				for wo := 0; wo < os[3]; wo++ {
					s := 0.0
					if bias != nil {
						s = float64(bias[co])
					}
					for ci := 0; ci < ws[1]; ci++ {
						for a := 0; a < ws[2]; a++ {
							for b := 0; b < ws[3]; b++ {
								for c := 0; c < ws[4]; c++ {
									wv := float64(w[(((co*ws[1]+ci)*ws[2]+a)*ws[3]+b)*ws[4]+c])
									s += wv * at(ci, to*st+a, ho*sh+b, wo*sw+c)
								}
							}
						}
					}
					out[i] = s
					i++
				}
			}
		}
	}
	return out, os
}

func vaeRelErr(got []float32, want []float64) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if r := math.Sqrt(num / den); !math.IsNaN(r) {
		return r
	}
	return math.Inf(1) // a NaN must fail the callers' e > tol
}

func TestConv3dMatchesDirect(t *testing.T) {
	b := New()
	cases := []struct {
		name   string
		x, w   []int
		p      backend.Conv3dParams
		noBias bool
	}{
		{"causal3", []int{5, 4, 7, 6}, []int{9, 5, 3, 3, 3}, backend.Conv3dParams{PadT: [2]int{2, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, false},
		{"pointwise", []int{6, 2, 9, 11}, []int{7, 6, 1, 1, 1}, backend.Conv3dParams{}, false},
		{"down2d", []int{4, 2, 9, 8}, []int{4, 4, 1, 3, 3}, backend.Conv3dParams{PadH: [2]int{0, 1}, PadW: [2]int{0, 1}, Stride: [3]int{1, 2, 2}}, false},
		{"timeStride", []int{3, 5, 4, 4}, []int{3, 3, 3, 1, 1}, backend.Conv3dParams{Stride: [3]int{2, 1, 1}}, true},
		{"manyOut", []int{2, 1, 70, 3}, []int{13, 2, 1, 3, 3}, backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}, false},
	}
	for i, tc := range cases {
		x := vaeRand(uint64(i), tensor.NumElements(tc.x))
		w := vaeRand(uint64(100+i), tensor.NumElements(tc.w))
		var bias []float32
		var bt backend.Tensor
		if !tc.noBias {
			bias = vaeRand(uint64(200+i), tc.w[0])
			bt = b.Upload(tensor.F32, []int{tc.w[0]}, bias)
		}
		want, ws := vaeRefConv(x, tc.x, w, tc.w, bias, tc.p)
		got := b.Conv3d(b.Upload(tensor.F32, tc.x, x), b.Upload(tensor.F32, tc.w, w), bt, tc.p)
		if !backend.SameShape(got.Shape(), ws) {
			t.Fatalf("%s: shape %v, want %v", tc.name, got.Shape(), ws)
		}
		if e := vaeRelErr(T(got).F, want); e > 1e-6 {
			t.Errorf("%s: rel err %.2e", tc.name, e)
		}
		// bf16: the conv is rounded, then the bias is added and rounded.
		gb := T(b.Conv3d(b.Upload(tensor.BF16, tc.x, x), b.Upload(tensor.BF16, tc.w, w), bt, tc.p)).F
		noBias, _ := vaeRefConv(x, tc.x, w, tc.w, nil, tc.p)
		for j, v := range noBias {
			r := tensor.RoundBF16(float32(v))
			if bias != nil {
				r = tensor.RoundBF16(r + bias[j/(ws[1]*ws[2]*ws[3])])
			}
			if d := math.Abs(float64(gb[j] - r)); !(d <= math.Abs(float64(r))/128+1e-6) { // one bf16 ulp; NaN fails too
				t.Fatalf("%s bf16: element %d = %v, want %v", tc.name, j, gb[j], r)
			}
		}
	}
}

func TestConv3dBadShapes(t *testing.T) {
	b := New()
	x := b.Upload(tensor.F32, []int{3, 1, 4, 4}, make([]float32, 48))
	for _, tc := range []struct {
		w    []int
		p    backend.Conv3dParams
		frag string
	}{
		{[]int{2, 4, 1, 1, 1}, backend.Conv3dParams{}, "channels"},
		{[]int{2, 3, 3, 1, 1}, backend.Conv3dParams{}, "smaller than the kernel"},
		{[]int{2, 3, 3, 3}, backend.Conv3dParams{}, "weight"},
	} {
		w := b.Upload(tensor.F32, tc.w, make([]float32, tensor.NumElements(tc.w)))
		err := func() (err error) {
			defer backend.Recover(&err)
			b.Conv3d(x, w, nil, tc.p)
			return nil
		}()
		if err == nil || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("weight %v: error %v, want one mentioning %q", tc.w, err, tc.frag)
		}
	}
}

func TestChannelRMSNorm(t *testing.T) {
	b := New()
	C, P := 6, 37
	x := vaeRand(1, C*P)
	x[0*P+5], x[1*P+5], x[2*P+5], x[3*P+5], x[4*P+5], x[5*P+5] = 0, 0, 0, 0, 0, 0 // a zero column stays zero
	g := vaeRand(2, C)
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		for _, silu := range []bool{false, true} {
			got := T(b.ChannelRMSNorm(b.Upload(dt, []int{C, 1, P, 1}, x), b.Upload(dt, []int{C}, g), silu)).F
			want := make([]float64, C*P)
			for p := 0; p < P; p++ {
				ss := 0.0
				for c := 0; c < C; c++ {
					ss += float64(x[c*P+p]) * float64(x[c*P+p])
				}
				n := math.Max(math.Sqrt(ss), 1e-12)
				for c := 0; c < C; c++ {
					y := float64(x[c*P+p]) / n * math.Sqrt(float64(C)) * float64(g[c])
					if silu {
						y = y / (1 + math.Exp(-y))
					}
					want[c*P+p] = y
				}
			}
			tol := 1e-6
			if dt == tensor.BF16 {
				tol = 1e-2 // four bf16 roundings
			}
			if e := vaeRelErr(got, want); e > tol {
				t.Errorf("%v silu=%v: rel err %.2e > %.0e", dt, silu, e, tol)
			}
			if got[5] != 0 {
				t.Errorf("%v: zero column gave %v", dt, got[5])
			}
			if dt == tensor.BF16 {
				for i, v := range got {
					if v != tensor.RoundBF16(v) {
						t.Fatalf("bf16 output %d = %v not bf16", i, v)
					}
				}
			}
		}
	}
}

func TestUpsampleNearest2x(t *testing.T) {
	b := New()
	x := vaeRand(3, 2*3*4*5)
	got := b.UpsampleNearest2x(b.Upload(tensor.F32, []int{2, 3, 4, 5}, x))
	if !backend.SameShape(got.Shape(), []int{2, 3, 8, 10}) {
		t.Fatalf("shape %v", got.Shape())
	}
	g := T(got).F
	for ct := 0; ct < 6; ct++ {
		for h := 0; h < 8; h++ {
			for w := 0; w < 10; w++ {
				if g[(ct*8+h)*10+w] != x[(ct*4+h/2)*5+w/2] {
					t.Fatalf("(%d,%d,%d) = %v, want source (%d,%d)", ct, h, w, g[(ct*8+h)*10+w], h/2, w/2)
				}
			}
		}
	}
}

func TestFrameAttention(t *testing.T) {
	b := New()
	// 9x7 frames; and 48x48 frames, whose 2304 queries span two score
	// blocks (vaeAttnFloats / 2304 rows each).
	for _, sz := range [][4]int{{5, 2, 9, 7}, {4, 1, 48, 48}} {
		C, T0, H, W := sz[0], sz[1], sz[2], sz[3]
		P := H * W
		x := vaeRand(4, 3*C*T0*P)
		got := T(b.FrameAttention(b.Upload(tensor.F32, []int{3 * C, T0, H, W}, x))).F
		at := func(part, c, t, i int) float64 { return float64(x[((part*C+c)*T0+t)*P+i]) }
		want := make([]float64, C*T0*P)
		s := make([]float64, P)
		for t0 := 0; t0 < T0; t0++ {
			for i := 0; i < P; i++ {
				m := math.Inf(-1)
				for j := range s {
					s[j] = 0
					for c := 0; c < C; c++ {
						s[j] += at(0, c, t0, i) * at(1, c, t0, j)
					}
					s[j] /= math.Sqrt(float64(C))
					m = math.Max(m, s[j])
				}
				sum := 0.0
				for j := range s {
					s[j] = math.Exp(s[j] - m)
					sum += s[j]
				}
				for c := 0; c < C; c++ {
					o := 0.0
					for j := range s {
						o += s[j] * at(2, c, t0, j)
					}
					want[(c*T0+t0)*P+i] = o / sum
				}
			}
		}
		if e := vaeRelErr(got, want); e > 1e-6 {
			t.Errorf("%v: rel err %.2e", sz, e)
		}
		gb := T(b.FrameAttention(b.Upload(tensor.BF16, []int{3 * C, T0, H, W}, x))).F
		for i, v := range gb {
			if v != tensor.RoundBF16(v) {
				t.Fatalf("%v bf16: output %d = %v is not bf16", sz, i, v)
			}
		}
		if e := vaeRelErr(gb, want); e > 1e-2 {
			t.Errorf("%v bf16: rel err %.2e", sz, e)
		}
	}
}

// BenchmarkConv3d times a causal 3x3x3 conv of the real VAE's last decoder
// stage shape class (96 channels) on a small frame.
func BenchmarkConv3d(b *testing.B) {
	be := New()
	C, T0, H, W := 96, 4, 32, 32
	x := be.Upload(tensor.F32, []int{C, T0, H, W}, vaeRand(1, C*T0*H*W))
	w := be.Upload(tensor.F32, []int{C, C, 3, 3, 3}, vaeRand(2, C*C*27))
	p := backend.Conv3dParams{PadT: [2]int{2, 0}, PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	flops := 2.0 * float64(C*C*27*T0*H*W)
	b.ResetTimer()
	for range b.N {
		be.Conv3d(x, w, nil, p)
	}
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// TestConv3dWithHistory checks the causal-history form against Conv3d on
// the concatenation, and that a nil history is a plain Conv3d.
func TestConv3dWithHistory(t *testing.T) {
	b := New()
	var _ backend.Conv3dHistory = b
	hs, xs, ws := []int{4, 2, 5, 6}, []int{4, 3, 5, 6}, []int{2, 4, 3, 3, 3}
	h := b.Upload(tensor.BF16, hs, vaeRand(1, tensor.NumElements(hs)))
	x := b.Upload(tensor.BF16, xs, vaeRand(2, tensor.NumElements(xs)))
	w := b.Upload(tensor.BF16, ws, vaeRand(3, tensor.NumElements(ws)))
	p := backend.Conv3dParams{PadH: [2]int{1, 1}, PadW: [2]int{1, 1}}
	want := b.Download(b.Conv3d(b.Concat(1, h, x), w, nil, p))
	got := b.Conv3dWithHistory(h, x, w, nil, p)
	if sh := got.Shape(); sh[1] != 3 {
		t.Fatalf("output shape %v, want 3 frames", sh)
	}
	for i, v := range b.Download(got) {
		if v != want[i] {
			t.Fatalf("value %d: %v, want %v", i, v, want[i])
		}
	}
	p.PadT = [2]int{2, 0}
	want = b.Download(b.Conv3d(x, w, nil, p))
	for i, v := range b.Download(b.Conv3dWithHistory(nil, x, w, nil, p)) {
		if v != want[i] {
			t.Fatalf("nil history, value %d: %v, want %v", i, v, want[i])
		}
	}
}
