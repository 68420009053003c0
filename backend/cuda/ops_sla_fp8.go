package cuda

import (
	"fmt"
	"os"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// SagePVEnv forces SageSLA's P·V kernel: "bf16" (e4m3 values multiplied on
// bf16 tensor cores, any sm_80+) or "fp8" (mma.sync e4m3, sm_89+ with NVRTC
// 12.4+). Unset: fp8 where it runs and passed its start-up check.
const SagePVEnv = "TURBODIFFUSION_SAGE_PV"

// sagePV records which SageSLA P·V kernel runs and why, per backend.
type sagePV struct {
	checked, fp8 bool
	forced, note string
}

var sagePVs sync.Map // *Backend -> *sagePV

func (b *Backend) sagePVState() *sagePV {
	s, _ := sagePVs.LoadOrStore(b, &sagePV{})
	return s.(*sagePV)
}

// SagePVKernel says which SageSLA P·V kernel runs and why.
func (b *Backend) SagePVKernel() string {
	if b.sageFP8() {
		return "fp8 e4m3 mma.sync " + b.sagePVState().note
	}
	return "bf16 mma.sync on e4m3 values " + b.sagePVState().note
}

// SetSagePV picks "bf16" or "fp8" (tests and benchmarks compare them); ""
// restores the default choice.
func (b *Backend) SetSagePV(k string) { sagePVs.Store(b, &sagePV{forced: k}) }

// sageFP8 decides once whether SageSLA uses the e4m3 kernel: only where the
// module was built with it (sage_fp8_supported) and only if it agrees with
// the bf16 kernel on a small problem. Any failure keeps the bf16 kernel and
// says why. The caller must not hold the device.
func (b *Backend) sageFP8() bool {
	s := b.sagePVState()
	if s.checked {
		return s.fp8
	}
	s.checked = true
	want := s.forced
	if want == "" {
		want = os.Getenv(SagePVEnv)
	}
	if want == "bf16" {
		s.note = "(chosen)"
		return false
	}
	if cc := b.info.CC[0]*10 + b.info.CC[1]; cc < 89 {
		s.note = fmt.Sprintf("(e4m3 mma needs sm_89+, device is %s)", b.info.Arch)
		return false
	}
	ok, err := b.fp8Built()
	if err != nil || !ok {
		s.note = fmt.Sprintf("(NVRTC %s builds no e4m3 mma; it needs 12.4+)", b.rtc.Version())
		if err != nil {
			s.note = fmt.Sprintf("(e4m3 support query failed: %v)", err)
		}
		return false
	}
	rel, err := b.checkSageFP8()
	switch {
	case err != nil:
		s.note = fmt.Sprintf("(e4m3 kernel rejected: %v)", err)
	case rel < 1e-2:
		s.fp8 = true
		s.note = fmt.Sprintf("(start-up check: rel-L2 %.1e vs the bf16 kernel)", rel)
	default:
		s.note = fmt.Sprintf("(e4m3 kernel rejected: rel-L2 %.2e vs the bf16 kernel)", rel)
	}
	return s.fp8
}

// fp8Built runs sage_fp8_supported: whether this NVRTC built the e4m3 path.
func (b *Backend) fp8Built() (ok bool, err error) {
	defer backend.Recover(&err)
	var t *Tensor
	func() {
		defer b.enter()()
		t = b.newTensor(tensor.F32, []int{1})
		b.launch(b.fn("sla_sage_fp8.cu", "sage_fp8_supported"), [3]int{1, 1, 1}, [3]int{1, 1, 1}, 0, t.buf.ptr)
	}()
	defer b.Free(t)
	return b.Download(t)[0] == 1, nil
}

// checkSageFP8 runs SageSLA with both P·V kernels on one random problem and
// returns the rel-L2 between them.
func (b *Backend) checkSageFP8() (rel float64, err error) {
	defer backend.Recover(&err)
	r := newXorshift(777)
	const L, heads = 700, 2
	shape := []int{L, heads * 128}
	q := b.Upload(tensor.BF16, shape, r.fill(L*heads*128))
	k := b.Upload(tensor.BF16, shape, r.fill(L*heads*128))
	v := b.Upload(tensor.BF16, shape, r.fill(L*heads*128))
	pw := b.Upload(tensor.BF16, []int{128, 128}, make([]float32, 128*128))
	defer func() {
		for _, t := range []backend.Tensor{q, k, v, pw} {
			b.Free(t)
		}
	}()
	p := slaCheck(q, k, v, heads, backend.SLAConfig{Kind: backend.SageSLA, TopK: 0.5}, pw, nil)
	ref, _ := b.slaRun(p, pw, nil, false, slaKernels{})
	got, _ := b.slaRun(p, pw, nil, false, slaKernels{fp8: true})
	defer b.Free(ref)
	defer b.Free(got)
	return checkRelL2(b.Download(got), b.Download(ref)), nil
}
