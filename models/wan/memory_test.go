package wan

import (
	"fmt"
	"slices"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// TestDeviceTensorsMatchLoad: the tensors DeviceTensors lists (what memory
// estimates count) are exactly the ones Load uploads, with their dtypes and
// shapes, for bf16, float32, -quant and dense (no proj_l) loads.
func TestDeviceTensorsMatchLoad(t *testing.T) {
	bf16Path, quantPath := tinyDiTFiles(t)
	for _, c := range []struct {
		name string
		path string
		opt  Options
	}{
		{"bf16 sla", bf16Path, Options{Attention: backend.SLA}},
		{"bf16 dense", bf16Path, Options{Attention: backend.Dense}},
		{"f32", bf16Path, Options{DType: tensor.F32}},
		{"quant sagesla", quantPath, Options{Attention: backend.SageSLA}},
	} {
		f := openFile(t, c.path)
		fi, err := DetectConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := DeviceTensors(fi, c.opt)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Load(cpu.New(), f, c.opt)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range m.params() {
			for _, x := range []*backend.Tensor{p.dst, p.scale} {
				if x != nil && *x != nil {
					got = append(got, describe(*x))
				}
			}
		}
		m.Free()
		var w []string
		for _, i := range want {
			w = append(w, i.DType.String()+fmt.Sprint(i.Shape))
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s: Load uploads %d tensors, DeviceTensors lists %d:\n got %v\nwant %v", c.name, len(got), len(w), got, w)
		}
	}
}

func describe(t backend.Tensor) string { return t.DType().String() + fmt.Sprint(t.Shape()) }
