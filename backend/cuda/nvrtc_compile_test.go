package cuda

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/kernels"
)

// TestKernelsCompile compiles every embedded module for sm_80 and sm_90 with
// whatever NVRTC is found (CI: Debian's libnvrtc11.2 11.8). No GPU needed.
func TestKernelsCompile(t *testing.T) {
	n, err := LoadNVRTC()
	if err != nil {
		var me *MissingLibraryError
		if errors.As(err, &me) {
			t.Skipf("NVRTC not installed, kernels not compiled (CI installs libnvrtc11.2 libnvrtc-builtins11.8): %v", err)
		}
		t.Fatal(err)
	}
	t.Logf("NVRTC %s at %s", n.Version(), n.Lib.Path)
	mods := kernels.Modules()
	if len(mods) == 0 {
		t.Fatal("no embedded kernels")
	}
	for _, base := range []string{"sm_80", "sm_90"} {
		for _, m := range mods {
			arch, ok := kernels.Arch(m.Name, base)
			if !ok {
				continue
			}
			if arch == "sm_90a" && n.Major < 12 {
				t.Logf("%s: needs NVRTC 12+ for sm_90a (have %s); not compiled", m.Name, n.Version())
				continue
			}
			cubin, err := n.Compile(m, arch)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if len(cubin) < 4 || string(cubin[1:4]) != "ELF" {
				t.Errorf("%s %s: output is not an ELF cubin", m.Name, arch)
			}
			t.Logf("%s %s: %d bytes", m.Name, arch, len(cubin))
		}
	}
}

// SM90ALibsEnv names a folder holding an NVRTC 12+ (CI: Debian trixie's
// libnvrtc12, unpacked by scripts/setup-ci.sh) used to compile the sm_90a
// kernels that the main NVRTC (11.8 in CI) cannot.
const SM90ALibsEnv = "TURBODIFFUSION_NVRTC_SM90A_LIBS"

// TestKernelsCompileSM90A compiles every module that needs sm_90a (the
// wgmma/TMA kernels) with the NVRTC in $TURBODIFFUSION_NVRTC_SM90A_LIBS.
func TestKernelsCompileSM90A(t *testing.T) {
	dir := os.Getenv(SM90ALibsEnv)
	if dir == "" {
		t.Skipf("%s not set: sm_90a kernels not compiled here (scripts/setup-ci.sh unpacks NVRTC 12 for CI)", SM90ALibsEnv)
	}
	n, err := LoadNVRTCFrom([]string{dir})
	if err != nil {
		t.Fatalf("%s=%s: %v", SM90ALibsEnv, dir, err)
	}
	if n.Major < 12 {
		t.Fatalf("%s: NVRTC %s cannot target sm_90a (need 12+)", n.Lib.Path, n.Version())
	}
	t.Logf("NVRTC %s at %s", n.Version(), n.Lib.Path)
	count := 0
	for _, m := range kernels.Modules() {
		if arch, ok := kernels.Arch(m.Name, "sm_90"); !ok || arch != "sm_90a" {
			continue
		}
		count++
		cubin, err := n.Compile(m, "sm_90a")
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(cubin) < 4 || string(cubin[1:4]) != "ELF" {
			t.Errorf("%s sm_90a: output is not an ELF cubin", m.Name)
		}
		t.Logf("%s sm_90a: %d bytes", m.Name, len(cubin))
	}
	if count == 0 {
		t.Fatal("no embedded module targets sm_90a")
	}
}

// TestCompileErrorShowsSource checks a broken kernel's error names the file,
// the line and quotes the source line.
func TestCompileErrorShowsSource(t *testing.T) {
	n, err := LoadNVRTC()
	if err != nil {
		t.Skipf("NVRTC not installed: %v", err)
	}
	src := kernels.Source{Name: "broken.cu", Code: "#include \"common.cuh\"\nextern \"C\" __global__ void k(float* p) {\n  p[0] = undefined_thing;\n}\n"}
	_, err = n.Compile(src, "sm_80")
	if err == nil {
		t.Fatal("broken kernel compiled")
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.Contains(msg, "broken.cu(3)") || !strings.Contains(msg, "p[0] = undefined_thing;") {
		t.Errorf("error lacks file/line or source text: %s", msg)
	}
}

func TestLibrarySearchError(t *testing.T) {
	_, err := openLib(libSpec{name: "libdoesnotexist", prefix: "libdoesnotexist.so", install: "nothing"}, []string{t.TempDir()}, nil, false)
	var me *MissingLibraryError
	if !errors.As(err, &me) {
		t.Fatalf("want MissingLibraryError, got %v", err)
	}
	if !strings.Contains(err.Error(), LibsEnv) || len(me.Searched) != 1 {
		t.Errorf("error should name the searched folder and %s: %v", LibsEnv, err)
	}
}
