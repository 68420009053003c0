package umt5

import (
	"fmt"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestBucketsVerified(t *testing.T) {
	// docs/NUMERICS.md §9, verified against the reference.
	ns := []int{8, 11, 12, 15, 16, 22, 23, 31, 32, 45, 46, 63, 64, 90, 91, 127, 128}
	want := []int{8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 15}
	for i, n := range ns {
		if got := relativeBucket(-n, 32, 128); got != want[i] {
			t.Errorf("bucket(−%d) = %d, want %d", n, got, want[i])
		}
		if got := relativeBucket(n, 32, 128); got != want[i]+16 {
			t.Errorf("bucket(+%d) = %d, want %d", n, got, want[i]+16)
		}
	}
	for n := 0; n < 8; n++ {
		if relativeBucket(-n, 32, 128) != n || (n > 0 && relativeBucket(n, 32, 128) != 16+n) {
			t.Errorf("offset ±%d: buckets %d, %d", n, relativeBucket(-n, 32, 128), relativeBucket(n, 32, 128))
		}
	}
	if relativeBucket(-100000, 32, 128) != 15 || relativeBucket(511, 32, 128) != 31 {
		t.Error("far offsets must saturate at the last bucket")
	}
}

type goldenCase struct {
	ids    []int32
	length int
	dim    int
}

func loadGoldenInputs(t *testing.T, f checkpoint.File) goldenCase {
	ids, shape := golden.Tensor(t, f, "ids")
	mask, _ := golden.Tensor(t, f, "mask")
	var c goldenCase
	for i, v := range ids {
		c.ids = append(c.ids, int32(v))
		if mask[i] != 0 {
			c.length++
			if i+1 != c.length {
				t.Fatalf("mask is not a prefix")
			}
		}
	}
	out, oshape := golden.Tensor(t, f, "encoder_out_fp32")
	c.dim = oshape[len(oshape)-1]
	if len(out) != shape[1]*c.dim {
		t.Fatalf("encoder_out shape %v vs ids %v", oshape, shape)
	}
	return c
}

// TestGolden compares with the reference T5Encoder on the tiny model, in
// float32 and bf16: the full output (padded rows computed, as T5Encoder
// does) and the zero-padded embedding UMT5EncoderModel returns.
func TestGolden(t *testing.T) {
	f := golden.Open(t, "umt5.safetensors")
	in := loadGoldenInputs(t, f)
	be := cpu.New()
	for _, c := range []struct {
		dt   tensor.DType
		name string
		tol  float64
	}{{tensor.F32, "fp32", 1e-4}, {tensor.BF16, "bf16", 2e-2}} {
		t.Run(c.name, func(t *testing.T) {
			enc, err := Load(be, f, Options{DType: c.dt})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			cfg := enc.Config()
			man := golden.LoadManifest(t)
			num := func(k string) int { return int(man.Number(t, "configs", "umt5", k)) }
			if cfg.Vocab != num("vocab_size") || cfg.Dim != num("dim") || cfg.Heads != num("num_heads") || cfg.HeadDim != num("head_dim") ||
				cfg.FFN != num("dim_ffn") || cfg.Layers != num("encoder_layers") || cfg.Buckets != num("num_buckets") {
				t.Errorf("detected config %+v differs from the set's manifest configs.umt5", cfg)
			}
			full, err := enc.forward(in.ids, in.length)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := golden.Tensor(t, f, "encoder_out_"+c.name)
			golden.Compare(t, "encoder_out_"+c.name, full, want, c.tol)
			got, err := enc.Encode(in.ids, in.length)
			if err != nil {
				t.Fatal(err)
			}
			want, _ = golden.Tensor(t, f, "embedding_"+c.name)
			golden.Compare(t, "embedding_"+c.name, got, want, c.tol)
			for i := in.length * in.dim; i < len(got); i++ {
				if got[i] != 0 {
					t.Fatalf("padded value %d = %v, want 0", i, got[i])
				}
			}
			// The valid rows of the prefix-only computation equal the full
			// run's: padded rows must not leak into valid ones (that would be
			// an O(1) difference). The GEMM may sum a row in another order
			// when the row count changes (SIMD tail tiles), so allow last-bit
			// differences: 1e-6 in float32, about one bf16 ulp in bf16.
			prefixTol := 1e-6
			if c.dt == tensor.BF16 {
				prefixTol = 4e-3
			}
			n := in.length * in.dim
			if r := golden.RelL2(got[:n], full[:n]); r > prefixTol {
				t.Fatalf("prefix run differs from full run: rel_l2 %.3e > %.0e", r, prefixTol)
			} else {
				t.Logf("prefix run vs full run: rel_l2 %.3e", r)
			}
			if c.dt == tensor.BF16 {
				// The bf16 path must really round: the reference itself
				// measured 7.1e-3 between its bf16 and fp32 outputs.
				ref32, _ := golden.Tensor(t, f, "encoder_out_fp32")
				r := golden.RelL2(full, ref32)
				t.Logf("bf16 output vs fp32 reference: rel_l2 %.2e", r)
				if r < 1e-3 || r > 2e-2 {
					t.Errorf("bf16 vs fp32 reference rel_l2 %.2e, want within [1e-3, 2e-2]", r)
				}
				for _, v := range got {
					if v != tensor.RoundBF16(v) {
						t.Fatalf("bf16 output %v is not bf16-exact", v)
					}
				}
			}
		})
	}
}

func TestEncodeBadInput(t *testing.T) {
	f := golden.Open(t, "umt5.safetensors")
	enc, err := Load(cpu.New(), f, Options{DType: tensor.F32})
	if err != nil {
		t.Fatal(err)
	}
	vocab := int32(enc.Config().Vocab) // the first id past the set's vocabulary
	for name, c := range map[string]struct {
		ids    []int32
		length int
		msg    string
	}{
		"length 0":      {[]int32{5, 1, 0}, 0, "length 0"},
		"length > ids":  {[]int32{5, 1}, 3, "length 3"},
		"id too large":  {[]int32{5, vocab, 1}, 3, fmt.Sprintf("token id %d", vocab)},
		"negative id":   {[]int32{-1, 1}, 2, "token id -1"},
		"pad not check": {[]int32{5, 1, 99999}, 2, ""}, // ids past length are not read
	} {
		_, err := enc.Encode(c.ids, c.length)
		if c.msg == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.msg)
		}
	}
	enc.Close()
	if _, err := enc.Encode([]int32{1}, 1); err == nil {
		t.Error("Encode after Close: want an error")
	}
	if _, err := Load(cpu.New(), f, Options{DType: tensor.F16}); err == nil {
		t.Error("float16 compute dtype: want an error")
	}
}
