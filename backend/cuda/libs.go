package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// LibsEnv names a list of folders (separated like PATH: ':' on Linux and
// macOS, ';' on Windows) searched before any other for the CUDA libraries.
const LibsEnv = "TURBODIFFUSION_CUDA_LIBS"

// Library is one loaded shared library.
type Library struct {
	Name   string // "libcuda", "libnvrtc", ...
	Path   string // file that was opened ("" when the system loader found it by name)
	Handle uintptr
}

// libSpec says how to find one library on each platform and what to
// install when it is missing.
//
// Linux/macOS: files named prefix or prefix + ".N[.M...]" ("libnvrtc.so.12").
//
// Windows: files named winPrefix + a version of digits and '_' + ".dll"
// ("nvrtc64_" + "120_0" + ".dll"), or exactly winPrefix when it ends in
// ".dll" ("nvcuda.dll"); winBare are the names handed to the system loader
// when no folder holds a match.
//
// The Windows names were checked against public sources, not on a Windows
// machine (none was at hand): nvcuda.dll and nvEncodeAPI64.dll are what
// FFmpeg's libavcodec/nvenc.c loads on 64-bit Windows (ffmpeg.org doxygen);
// nvrtc64_120_0.dll, nvrtc64_112_0.dll, cublasLt64_12.dll and
// cublasLt64_11.dll are in the Windows DLL table of NVIDIA's cuda-python
// (cuda_pathfinder, made from NVIDIA's redist listings for CUDA 12.8.1). For
// CUDA 13 the sources are third-party projects that stage the files:
// nvrtc64_130_0.dll with nvrtc-builtins64_133.dll (13.3) and
// cublasLt64_13.dll, from %CUDA_PATH%\bin\x64 (CUDA 13 moved the DLLs
// there; cuda-pathfinder's release notes also speak of the CUDA 13 Windows
// layouts). So NVRTC's DLL keeps the major version's "_0" name for a whole
// major release, while its builtins DLL names the minor.
type libSpec struct {
	name    string
	prefix  string
	exclude []string
	install string

	winPrefix  string
	winBare    []string
	winInstall string
}

var (
	specCUDA = libSpec{name: "libcuda", prefix: "libcuda.so",
		install:   "the NVIDIA driver (libcuda.so.1 comes with it; in a container, run with the NVIDIA container toolkit)",
		winPrefix: "nvcuda.dll", winBare: []string{"nvcuda.dll"},
		winInstall: "the NVIDIA driver (nvcuda.dll in System32 comes with it)"}
	specNVRTC = libSpec{name: "libnvrtc", prefix: "libnvrtc.so", exclude: []string{"builtins", "alt"},
		install:   "NVRTC: the CUDA toolkit, `pip install nvidia-cuda-nvrtc` (or nvidia-cuda-nvrtc-cu12), or Debian's libnvrtc11.2 + libnvrtc-builtins11.8 (non-free)",
		winPrefix: "nvrtc64_", winBare: []string{"nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"},
		winInstall: "NVRTC: the CUDA toolkit (nvrtc64_120_0.dll or nvrtc64_130_0.dll in %CUDA_PATH%\\bin, or bin\\x64 from CUDA 13) or `pip install nvidia-cuda-nvrtc-cu12`"}
	specBuiltins = libSpec{name: "libnvrtc-builtins", prefix: "libnvrtc-builtins.so",
		install:    "the NVRTC builtins library that ships beside libnvrtc (libnvrtc-builtins.so.*)",
		winPrefix:  "nvrtc-builtins64_",
		winInstall: "the NVRTC builtins DLL that ships beside nvrtc64_*.dll (nvrtc-builtins64_<major><minor>.dll)"}
	specCublasLt = libSpec{name: "libcublasLt", prefix: "libcublasLt.so",
		install:   "cuBLASLt: the CUDA toolkit or `pip install nvidia-cublas` (nvidia-cublas-cu12 for CUDA 12)",
		winPrefix: "cublasLt64_", winBare: []string{"cublasLt64_13.dll", "cublasLt64_12.dll", "cublasLt64_11.dll"},
		winInstall: "cuBLASLt: the CUDA toolkit (cublasLt64_12.dll or cublasLt64_13.dll in %CUDA_PATH%\\bin, or bin\\x64 from CUDA 13) or `pip install nvidia-cublas-cu12`"}
)

// installFor is what to install on goos.
func (s libSpec) installFor(goos string) string {
	if goos == "windows" && s.winInstall != "" {
		return s.winInstall
	}
	return s.install
}

// bareNames are the names handed to the system loader after the folders.
func (s libSpec) bareNames(goos string) []string {
	if goos == "windows" {
		return s.winBare
	}
	return []string{s.prefix + ".1", s.prefix}
}

// MissingLibraryError says which library could not be loaded, every folder
// that was searched, and what to install.
type MissingLibraryError struct {
	Lib      string
	Searched []string
	Failures []string // files that exist but failed to open, with the loader's reason
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

// SearchDirs is the library search order. Linux and macOS:
// $TURBODIFFUSION_CUDA_LIBS, $LD_LIBRARY_PATH, $CUDA_HOME/$CUDA_PATH, the
// CUDA toolkit folders (newest first), the driver and system folders, then
// pip's nvidia/*/lib folders. Windows: see windowsSearchDirs.
func SearchDirs() []string {
	if runtime.GOOS == "windows" {
		exeDir := ""
		if exe, err := os.Executable(); err == nil {
			exeDir = filepath.Dir(exe)
		}
		return windowsSearchDirs(os.Getenv, os.Environ(), exeDir)
	}
	return unixSearchDirs()
}

func unixSearchDirs() []string {
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
	return dedupe(dirs, false)
}

// windowsSearchDirs is the Windows search order, from the environment
// (getenv, environ as os.Environ gives it) and the executable's folder,
// written without the host's path functions so tests run on any OS:
// %TURBODIFFUSION_CUDA_LIBS%; %CUDA_PATH%\bin and bin\x64 (CUDA 13 moved
// its DLLs there); the same for every %CUDA_PATH_V<major>_<minor>%, newest
// first (the installer sets one per toolkit); the executable's folder;
// %PATH%; then pip's NVIDIA wheels in %VIRTUAL_ENV%. The system loader
// (System32, where the driver's nvcuda.dll and nvEncodeAPI64.dll live) comes
// after these, in openLib.
func windowsSearchDirs(getenv func(string) string, environ []string, exeDir string) []string {
	var dirs []string
	add := func(ds ...string) {
		for _, d := range ds {
			if d = strings.TrimSpace(d); d != "" {
				dirs = append(dirs, strings.TrimRight(d, `\/`))
			}
		}
	}
	bins := func(root string) {
		if root != "" {
			add(winJoin(root, "bin"), winJoin(root, `bin\x64`))
		}
	}
	add(strings.Split(getenv(LibsEnv), ";")...)
	bins(getenv("CUDA_PATH"))
	type versioned struct {
		ver  []int
		root string
	}
	var vs []versioned
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(strings.ToUpper(k), "CUDA_PATH_V") {
			continue
		}
		var ver []int
		for _, p := range strings.Split(k[len("CUDA_PATH_V"):], "_") {
			n, err := strconv.Atoi(p)
			if err != nil {
				ver = nil
				break
			}
			ver = append(ver, n)
		}
		if ver != nil {
			vs = append(vs, versioned{ver, v})
		}
	}
	sort.SliceStable(vs, func(i, j int) bool { return versionLess(vs[j].ver, vs[i].ver) })
	for _, v := range vs {
		bins(v.root)
	}
	add(exeDir)
	add(strings.Split(getenv("PATH"), ";")...)
	if v := getenv("VIRTUAL_ENV"); v != "" {
		sp := winJoin(v, `Lib\site-packages\nvidia`)
		add(winJoin(sp, `cu13\bin\x86_64`), winJoin(sp, `cuda_nvrtc\bin`), winJoin(sp, `cublas\bin`))
	}
	return dedupe(dirs, true)
}

// winJoin joins Windows path elements with a backslash on any host.
func winJoin(dir, name string) string { return strings.TrimRight(dir, `\/`) + `\` + name }

// dedupe drops repeated folders, keeping the first position; Windows paths
// compare without case.
func dedupe(dirs []string, foldCase bool) []string {
	seen := map[string]bool{}
	out := dirs[:0]
	for _, d := range dirs {
		k := d
		if foldCase {
			k = strings.ToLower(d)
		}
		if !seen[k] {
			seen[k] = true
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

// candidates lists the files in dir matching spec on this OS, best first.
func (s libSpec) candidates(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return s.pick(runtime.GOOS, dir, names)
}

// pick keeps the names in dir that match spec on goos and returns their
// paths, best first: highest version number, then shortest name.
func (s libSpec) pick(goos, dir string, names []string) []string {
	type cand struct {
		path string
		ver  []int
	}
	var cs []cand
	for _, n := range names {
		ver, ok := s.match(goos, n)
		if !ok {
			continue
		}
		p := filepath.Join(dir, n)
		if goos == "windows" {
			p = winJoin(dir, n)
		}
		cs = append(cs, cand{p, ver})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if versionLess(cs[j].ver, cs[i].ver) || versionLess(cs[i].ver, cs[j].ver) {
			return versionLess(cs[j].ver, cs[i].ver)
		}
		return len(cs[i].path) < len(cs[j].path)
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.path
	}
	return out
}

// match says whether file name n is spec's library on goos, and its version.
func (s libSpec) match(goos, n string) ([]int, bool) {
	if goos == "windows" {
		if s.winPrefix == "" {
			return nil, false
		}
		ln, lp := strings.ToLower(n), strings.ToLower(s.winPrefix)
		if strings.HasSuffix(lp, ".dll") {
			return nil, ln == lp
		}
		v, ok := strings.CutSuffix(strings.TrimPrefix(ln, lp), ".dll")
		if !strings.HasPrefix(ln, lp) || !ok || v == "" || strings.Trim(v, "0123456789_") != "" {
			return nil, false // also drops nvrtc64_120_0.alt.dll
		}
		return parseVersion(strings.Split(v, "_")), true
	}
	if !strings.HasPrefix(n, s.prefix) {
		return nil, false
	}
	if rest := n[len(s.prefix):]; rest != "" && rest[0] != '.' {
		return nil, false
	}
	for _, x := range s.exclude {
		if strings.Contains(n, x) {
			return nil, false
		}
	}
	return soVersion(n), true
}

// versionLess orders version numbers; a missing part counts as lower.
func versionLess(a, b []int) bool {
	for k := 0; k < len(a) && k < len(b); k++ {
		if a[k] != b[k] {
			return a[k] < b[k]
		}
	}
	return len(a) < len(b)
}

// soVersion parses the numbers after ".so." ("libx.so.12.4" -> [12 4]).
func soVersion(path string) []int {
	_, v, ok := strings.Cut(filepath.Base(path), ".so.")
	if !ok {
		return nil
	}
	return parseVersion(strings.Split(v, "."))
}

// parseVersion reads leading numeric parts, stopping at the first other.
func parseVersion(parts []string) []int {
	var out []int
	for _, p := range parts {
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
// global asks (on Linux/macOS) that the library's symbols serve later loads.
func openLib(spec libSpec, dirs []string, skipDir func(string) bool, global bool) (*Library, error) {
	e := &MissingLibraryError{Lib: spec.name, Install: spec.installFor(runtime.GOOS)}
	for _, d := range dirs {
		if skipDir != nil && skipDir(d) {
			continue
		}
		e.Searched = append(e.Searched, d)
		for _, p := range spec.candidates(d) {
			h, err := openPath(p, global)
			if err == nil {
				return &Library{Name: spec.name, Path: p, Handle: h}, nil
			}
			e.Failures = append(e.Failures, fmt.Sprintf("%s: %v", p, err))
		}
	}
	for _, n := range spec.bareNames(runtime.GOOS) {
		if h, err := openName(n, global); err == nil {
			path := n + " (system loader)"
			if p := modulePath(h); p != "" {
				path = p
			}
			return &Library{Name: spec.name, Path: path, Handle: h}, nil
		}
	}
	return nil, e
}

func notCompat(d string) bool { return strings.Contains(d, "/compat") }

// symbols resolves every name into its slot, naming the first one missing.
func (l *Library) symbols(table []sym) error {
	for _, s := range table {
		p, err := symbol(l.Handle, s.name)
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
