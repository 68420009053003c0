package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ebitengine/purego"
)

// LibsEnv names a colon-separated list of folders searched before any other
// for the CUDA libraries.
const LibsEnv = "TURBODIFFUSION_CUDA_LIBS"

// Library is one loaded shared library.
type Library struct {
	Name   string // "libcuda", "libnvrtc", ...
	Path   string // file that was opened ("" when the system loader found it by name)
	Handle uintptr
}

// libSpec says how to find one library: file-name prefix ("libnvrtc.so"),
// names never to take, and what to install when it is missing.
type libSpec struct {
	name    string
	prefix  string
	exclude []string
	install string
}

var (
	specCUDA = libSpec{name: "libcuda", prefix: "libcuda.so",
		install: "the NVIDIA driver (libcuda.so.1 comes with it; in a container, run with the NVIDIA container toolkit)"}
	specNVRTC = libSpec{name: "libnvrtc", prefix: "libnvrtc.so", exclude: []string{"builtins", "alt"},
		install: "NVRTC: the CUDA toolkit, `pip install nvidia-cuda-nvrtc` (or nvidia-cuda-nvrtc-cu12), or Debian's libnvrtc11.2 + libnvrtc-builtins11.8 (non-free)"}
	specBuiltins = libSpec{name: "libnvrtc-builtins", prefix: "libnvrtc-builtins.so",
		install: "the NVRTC builtins library that ships beside libnvrtc (libnvrtc-builtins.so.*)"}
	specCublasLt = libSpec{name: "libcublasLt", prefix: "libcublasLt.so",
		install: "cuBLASLt: the CUDA toolkit or `pip install nvidia-cublas` (nvidia-cublas-cu12 for CUDA 12)"}
)

// MissingLibraryError says which library could not be loaded, every folder
// that was searched, and what to install.
type MissingLibraryError struct {
	Lib      string
	Searched []string
	Failures []string // files that exist but failed to open, with dlopen's reason
	Install  string
}

func (e *MissingLibraryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cuda: cannot load %s", e.Lib)
	if len(e.Failures) > 0 {
		fmt.Fprintf(&b, "; found but failed to open: %s", strings.Join(e.Failures, "; "))
	}
	fmt.Fprintf(&b, "\n  searched: %s, then the system loader's default path", strings.Join(e.Searched, ", "))
	fmt.Fprintf(&b, "\n  install %s,\n  or set %s to the folder that holds it", e.Install, LibsEnv)
	return b.String()
}

// SearchDirs is the library search order: $TURBODIFFUSION_CUDA_LIBS,
// $LD_LIBRARY_PATH, $CUDA_HOME/$CUDA_PATH, the CUDA toolkit folders (newest
// first), the driver and system folders, then pip's nvidia/*/lib folders.
func SearchDirs() []string {
	var dirs []string
	add := func(ds ...string) {
		for _, d := range ds {
			if d != "" {
				dirs = append(dirs, filepath.Clean(d))
			}
		}
	}
	add(filepath.SplitList(os.Getenv(LibsEnv))...)
	add(filepath.SplitList(os.Getenv("LD_LIBRARY_PATH"))...)
	for _, env := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if h := os.Getenv(env); h != "" {
			add(filepath.Join(h, "lib64"), filepath.Join(h, "targets/x86_64-linux/lib"))
		}
	}
	add("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
	add(globDesc("/usr/local/cuda-*/targets/x86_64-linux/lib")...)
	add(globDesc("/usr/local/cuda-*/lib64")...)
	add("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
		"/usr/lib64", "/usr/lib/wsl/lib")
	var py []string
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		py = append(py, v+"/lib/python3*/site-packages/nvidia/*/lib")
	}
	home, _ := os.UserHomeDir()
	py = append(py, home+"/.local/lib/python3*/site-packages/nvidia/*/lib",
		"/opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/*/lib",
		"/usr/local/lib/python3*/site-packages/nvidia/*/lib",
		"/usr/lib/python3/dist-packages/nvidia/*/lib")
	for _, p := range py {
		add(globDesc(p)...)
	}
	// Drop duplicates, keep the first position.
	seen := map[string]bool{}
	out := dirs[:0]
	for _, d := range dirs {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

func globDesc(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	sort.Sort(sort.Reverse(sort.StringSlice(m)))
	return m
}

// candidates lists the files in dir matching spec, best first (highest
// version number, then shortest name).
func (s libSpec) candidates(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, s.prefix) {
			continue
		}
		rest := n[len(s.prefix):]
		if rest != "" && rest[0] != '.' {
			continue
		}
		bad := false
		for _, x := range s.exclude {
			bad = bad || strings.Contains(n, x)
		}
		if !bad {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		vi, vj := soVersion(out[i]), soVersion(out[j])
		for k := 0; k < len(vi) && k < len(vj); k++ {
			if vi[k] != vj[k] {
				return vi[k] > vj[k]
			}
		}
		return len(out[i]) < len(out[j])
	})
	return out
}

// soVersion parses the numbers after ".so." ("libx.so.12.4" -> [12 4]).
func soVersion(path string) []int {
	_, v, ok := strings.Cut(filepath.Base(path), ".so.")
	if !ok {
		return nil
	}
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			break
		}
		out = append(out, n)
	}
	return out
}

// openLib loads the first match of spec in dirs, then tries the system
// loader by bare name. skipDir drops folders (the CUDA compat libcuda).
func openLib(spec libSpec, dirs []string, skipDir func(string) bool, mode int) (*Library, error) {
	e := &MissingLibraryError{Lib: spec.name, Install: spec.install}
	for _, d := range dirs {
		if skipDir != nil && skipDir(d) {
			continue
		}
		e.Searched = append(e.Searched, d)
		for _, p := range spec.candidates(d) {
			h, err := purego.Dlopen(p, mode)
			if err == nil {
				return &Library{Name: spec.name, Path: p, Handle: h}, nil
			}
			e.Failures = append(e.Failures, fmt.Sprintf("%s: %v", p, err))
		}
	}
	for _, n := range []string{spec.prefix + ".1", spec.prefix} {
		if h, err := purego.Dlopen(n, mode); err == nil {
			return &Library{Name: spec.name, Path: n + " (system loader)", Handle: h}, nil
		}
	}
	return nil, e
}

func notCompat(d string) bool { return strings.Contains(d, "/compat") }

// symbols resolves every name into its slot, naming the first one missing.
func (l *Library) symbols(table []sym) error {
	for _, s := range table {
		p, err := purego.Dlsym(l.Handle, s.name)
		if err != nil || p == 0 {
			return fmt.Errorf("cuda: %s (%s) lacks symbol %s: the library is too old or not the real one", l.Name, l.Path, s.name)
		}
		*s.addr = p
	}
	return nil
}

type sym struct {
	name string
	addr *uintptr
}
