package nvenc

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
)

// TestProbe asks the real driver about GPU 0 and prints what it says.
// Without a GPU it checks that the answer is one clear "not available"
// line and skips. On a GPU, "no encoder on this GPU" (NV_ENC_ERR_NO_ENCODE_DEVICE
// or NV_ENC_ERR_UNSUPPORTED_DEVICE) passes, being a true answer, while any
// other refusal (a wrong version word, parameter or pointer) fails.
func TestProbe(t *testing.T) {
	start := time.Now()
	info, err := Probe(0, 30*time.Second)
	line := Describe(info, err)
	fmt.Printf("NVENC probe (%v): %s\n", time.Since(start).Round(time.Millisecond), line)
	if err != nil {
		fmt.Printf("  error: %v\n", err)
	}
	if info != nil {
		fmt.Printf("  library %s, driver's newest API %s, spoken %s\n", info.Library, info.DriverMax, info.API)
		for _, g := range info.Codecs {
			fmt.Printf("  codec %s (%s)\n", CodecName(g), g)
		}
		if c := info.H264; c != nil {
			fmt.Printf("  H.264: input formats %v, max %dx%d, max B-frames %d, async %v, engines %d\n",
				c.InputFormats, c.MaxWidth, c.MaxHeight, c.MaxBFrames, c.AsyncEncode, c.Engines)
		}
	}
	if line == "" || strings.Contains(line, "\n") {
		t.Errorf("Describe gave %q, want one non-empty line", line)
	}
	if n, derr := cuda.DeviceCount(); derr != nil || n == 0 {
		if err == nil || !strings.HasPrefix(line, "not available — ") {
			t.Errorf("no GPU (%v), yet the probe says %q", derr, line)
		}
		t.Skipf("no GPU: %s", line)
	}
	// The same session at older API versions: an answer that changes with
	// the version points at a layout or version-word problem, one that
	// does not is the driver's own.
	if info != nil {
		for _, v := range []Version{{12, 2}, {12, 0}, {11, 1}} {
			if info.DriverMax.less(v) {
				continue
			}
			vi, verr := withTimeout(30*time.Second, func() (*Info, error) { return probe(0, v) })
			fmt.Printf("  at API %s: %s\n", v, Describe(vi, verr))
		}
	}
	var se *StatusError
	if errors.As(err, &se) && (se.Status == StatusNoEncodeDevice || se.Status == StatusUnsupportedDevice) {
		t.Logf("the driver has no encoder for this GPU: %s", line)
		return
	}
	if err != nil {
		t.Fatalf("the probe failed: %v", err)
	}
	if len(info.Codecs) == 0 {
		t.Fatal("a session opened but lists no codec")
	}
	if c := info.H264; c != nil {
		if c.MaxWidth < 64 || c.MaxHeight < 64 || c.Engines < 1 {
			t.Errorf("H.264 limits %dx%d, %d engines: not plausible", c.MaxWidth, c.MaxHeight, c.Engines)
		}
		nv12 := false
		for _, f := range c.InputFormats {
			nv12 = nv12 || f == FormatNV12
		}
		if !nv12 {
			t.Errorf("H.264 input formats %v lack NV12", c.InputFormats)
		}
	}
}
