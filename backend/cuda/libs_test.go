package cuda

import (
	"reflect"
	"testing"
)

// TestLibraryCandidatesWindows: the DLL names each library has on Windows
// are picked from a folder listing (case-insensitively), newest first, and
// look-alikes (the NVRTC "alt" DLL, the builtins for NVRTC, other cuBLAS
// DLLs) are not. Plain functions: runs on any OS.
func TestLibraryCandidatesWindows(t *testing.T) {
	dir := `C:\Program Files\NVIDIA GPU Computing Toolkit\CUDA\v13.0\bin\x64`
	listing := []string{
		"cublas64_13.dll", "cublasLt64_12.dll", "cublasLt64_13.dll", "cudart64_13.dll",
		"nvrtc64_120_0.dll", "NVRTC64_130_0.DLL", "nvrtc64_130_0.alt.dll", "nvrtc-builtins64_130.dll",
		"nvrtc-builtins64_133.dll", "nvrtc64_.dll", "nvrtc64_130_0.dll.bak", "nvcuda.dll", "nvEncodeAPI64.dll",
	}
	nvenc := libSpec{name: "libnvidia-encode", prefix: "libnvidia-encode.so", winPrefix: "nvEncodeAPI64.dll"}
	for _, c := range []struct {
		spec libSpec
		want []string
	}{
		{specNVRTC, []string{"NVRTC64_130_0.DLL", "nvrtc64_120_0.dll"}},
		{specBuiltins, []string{"nvrtc-builtins64_133.dll", "nvrtc-builtins64_130.dll"}},
		{specCublasLt, []string{"cublasLt64_13.dll", "cublasLt64_12.dll"}},
		{specCUDA, []string{"nvcuda.dll"}},
		{nvenc, []string{"nvEncodeAPI64.dll"}},
	} {
		var want []string
		for _, n := range c.want {
			want = append(want, dir+`\`+n)
		}
		if got := c.spec.pick("windows", dir, listing); !reflect.DeepEqual(got, want) {
			t.Errorf("%s on windows: %q, want %q", c.spec.name, got, want)
		}
		// The Linux names are not taken on Windows, nor the DLLs on Linux.
		if got := c.spec.pick("linux", dir, listing); len(got) != 0 {
			t.Errorf("%s on linux picked DLLs: %q", c.spec.name, got)
		}
	}
	if got := specNVRTC.pick("windows", dir, []string{"libnvrtc.so.12"}); len(got) != 0 {
		t.Errorf("nvrtc on windows picked %q", got)
	}
	if got, want := specCUDA.bareNames("windows"), []string{"nvcuda.dll"}; !reflect.DeepEqual(got, want) {
		t.Errorf("driver's bare names on windows: %q, want %q", got, want)
	}
	if got := specNVRTC.bareNames("windows"); len(got) == 0 || got[0] != "nvrtc64_130_0.dll" {
		t.Errorf("nvrtc's bare names on windows: %q, want the newest (nvrtc64_130_0.dll) first", got)
	}
}

// TestLibraryCandidatesLinux: the Linux choice is as before the Windows
// names came in: highest soname version first, builtins and alt excluded.
func TestLibraryCandidatesLinux(t *testing.T) {
	listing := []string{"libnvrtc.so", "libnvrtc.so.11.2", "libnvrtc.so.12", "libnvrtc.so.12.4.127",
		"libnvrtc-builtins.so.12.4", "libnvrtc.alt.so.12", "libnvrtcx.so", "nvrtc64_120_0.dll"}
	want := []string{"/l/libnvrtc.so.12.4.127", "/l/libnvrtc.so.12", "/l/libnvrtc.so.11.2", "/l/libnvrtc.so"}
	if got := specNVRTC.pick("linux", "/l", listing); !reflect.DeepEqual(got, want) {
		t.Errorf("nvrtc on linux: %q, want %q", got, want)
	}
	if got, want := specCUDA.bareNames("linux"), []string{"libcuda.so.1", "libcuda.so"}; !reflect.DeepEqual(got, want) {
		t.Errorf("driver's bare names on linux: %q, want %q", got, want)
	}
}

// TestWindowsSearchDirs: the Windows search order from a given environment.
func TestWindowsSearchDirs(t *testing.T) {
	env := map[string]string{
		LibsEnv:       `D:\cudalibs;;E:\more\`,
		"CUDA_PATH":   `C:\CUDA\v13.0`,
		"PATH":        `C:\Windows\system32;C:\CUDA\v12.4\bin;C:\tools`,
		"VIRTUAL_ENV": `C:\venv`,
	}
	environ := []string{
		`CUDA_PATH=C:\CUDA\v13.0`,
		`CUDA_PATH_V12_4=C:\CUDA\v12.4`,
		`CUDA_PATH_V13_0=C:\CUDA\v13.0`,
		`CUDA_PATH_V12_10=C:\CUDA\v12.10`,
		`CUDA_PATH_VX=C:\bogus`,
		`OTHER=1`,
	}
	got := windowsSearchDirs(func(k string) string { return env[k] }, environ, `C:\apps\turbodiffusion`)
	want := []string{
		`D:\cudalibs`, `E:\more`,
		`C:\CUDA\v13.0\bin`, `C:\CUDA\v13.0\bin\x64`,
		`C:\CUDA\v12.10\bin`, `C:\CUDA\v12.10\bin\x64`,
		`C:\CUDA\v12.4\bin`, `C:\CUDA\v12.4\bin\x64`,
		`C:\apps\turbodiffusion`,
		`C:\Windows\system32`, `C:\tools`,
		`C:\venv\Lib\site-packages\nvidia\cu13\bin\x86_64`,
		`C:\venv\Lib\site-packages\nvidia\cuda_nvrtc\bin`,
		`C:\venv\Lib\site-packages\nvidia\cublas\bin`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("search dirs:\n got %q\nwant %q", got, want)
	}
}
