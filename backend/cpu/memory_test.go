package cpu

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

func TestUploadDownload(t *testing.T) {
	be := New()
	src := []float32{1, 1.00390625, -2.5, 3.1415927}
	x := be.Upload(tensor.BF16, []int{2, 2}, src)
	if src[3] != 3.1415927 {
		t.Errorf("Upload modified the caller's data")
	}
	got := be.Download(x)
	for i, v := range src {
		if got[i] != tensor.RoundBF16(v) {
			t.Errorf("BF16 upload [%d]: %v, want %v", i, got[i], tensor.RoundBF16(v))
		}
	}
	got[0] = 99
	if be.Download(x)[0] == 99 {
		t.Errorf("Download returned the tensor's storage, want a copy")
	}
	f := be.Upload(tensor.F32, []int{4}, src)
	if be.Download(f)[3] != src[3] {
		t.Errorf("F32 upload rounded")
	}
	q := be.UploadInt8([]int{3}, []int8{-128, 0, 127})
	if q.DType() != tensor.I8 || T(q).I[0] != -128 || T(q).I[2] != 127 {
		t.Errorf("UploadInt8 gives %v %v", q.DType(), T(q).I)
	}
	be.Sync()
	expectFail(t, "UploadInt8 size", func() { be.UploadInt8([]int{2, 2}, []int8{1}) }, "[2 2]", "1")
	expectFail(t, "Upload dtype", func() { be.Upload(tensor.F16, []int{1}, []float32{1}) }, "float16")
	expectFail(t, "Upload negative", func() { be.Upload(tensor.F32, []int{-1}, nil) }, "negative")
	expectFail(t, "Download int8", func() { be.Download(q) }, "int8")
	be.Free(q)
	expectFail(t, "int8 after Free", func() { be.Reshape(q, 3) }, "after Free")
}
