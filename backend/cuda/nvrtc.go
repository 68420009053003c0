package cuda

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/turbodiffusion-go/turbodiffusion/kernels"
)

// CacheEnv overrides the folder compiled kernels are cached in.
const CacheEnv = "TURBODIFFUSION_KERNEL_CACHE"

// NVRTC compiles the embedded kernels. It needs only libnvrtc (and its
// builtins), not a GPU, so CI can check every kernel compiles.
type NVRTC struct {
	Lib, Builtins *Library
	Major, Minor  int

	create, destroy, compile, logSize, getLog, cubinSize, getCubin, ptxSize, getPtx, errStr uintptr
}

// LoadNVRTC finds and loads libnvrtc and, first, the builtins library from
// the same folder (that folder is often not on the loader's path).
func LoadNVRTC() (*NVRTC, error) { return LoadNVRTCFrom(SearchDirs()) }

// LoadNVRTCFrom loads NVRTC from the first of dirs that holds it (tests use
// it to compile the sm_90a kernels with a second, newer NVRTC).
func LoadNVRTCFrom(dirs []string) (*NVRTC, error) {
	lib, err := openLib(specNVRTC, dirs, nil, true)
	if err != nil {
		return nil, err
	}
	n := &NVRTC{Lib: lib}
	err = lib.symbols([]sym{
		{"nvrtcCreateProgram", &n.create}, {"nvrtcDestroyProgram", &n.destroy},
		{"nvrtcCompileProgram", &n.compile}, {"nvrtcGetProgramLogSize", &n.logSize},
		{"nvrtcGetProgramLog", &n.getLog}, {"nvrtcGetCUBINSize", &n.cubinSize}, {"nvrtcGetCUBIN", &n.getCubin},
		{"nvrtcGetPTXSize", &n.ptxSize}, {"nvrtcGetPTX", &n.getPtx}, {"nvrtcGetErrorString", &n.errStr},
	})
	if err != nil {
		return nil, err
	}
	var ver uintptr
	if err := lib.symbols([]sym{{"nvrtcVersion", &ver}}); err != nil {
		return nil, err
	}
	var maj, mnr int32
	call(ver, uintptr(unsafe.Pointer(&maj)), uintptr(unsafe.Pointer(&mnr)))
	n.Major, n.Minor = int(maj), int(mnr)
	// The builtins must come from libnvrtc's own folder and match its version.
	bdirs := []string{filepath.Dir(lib.Path)}
	if !filepath.IsAbs(lib.Path) {
		bdirs = dirs
	}
	n.Builtins, err = openLib(specBuiltins, bdirs, nil, true)
	if err != nil {
		return nil, fmt.Errorf("%w\n  (libnvrtc %d.%d was found at %s; its builtins must sit beside it)", err, n.Major, n.Minor, lib.Path)
	}
	return n, nil
}

// Version is NVRTC's "major.minor".
func (n *NVRTC) Version() string { return fmt.Sprintf("%d.%d", n.Major, n.Minor) }

func (n *NVRTC) status(r uintptr) string {
	r2, _, _ := purego.SyscallN(n.errStr, r)
	return goString(r2)
}

// CompileError is a kernel that failed to compile; Log has each error line
// followed by the source line it points at.
type CompileError struct {
	Kernel, Arch string
	Log          string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("nvrtc: compiling %s for %s failed:\n%s", e.Kernel, e.Arch, e.Log)
}

var logLine = regexp.MustCompile(`^([^\s()]+)\((\d+)\): `)

// annotate appends the offending source line under each "file(N): ..." line.
func annotate(log string, files map[string]string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(log, "\x00\n"), "\n") {
		b.WriteString(line)
		b.WriteByte('\n')
		m := logLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		src, ok := files[filepath.Base(m[1])]
		no, _ := strconv.Atoi(m[2])
		if lines := strings.Split(src, "\n"); ok && no >= 1 && no <= len(lines) {
			fmt.Fprintf(&b, "    %5d | %s\n", no, strings.TrimRight(lines[no-1], "\r"))
		}
	}
	return b.String()
}

// Compile builds one embedded module for arch ("sm_90") and returns a cubin.
func (n *NVRTC) Compile(src kernels.Source, arch string) ([]byte, error) {
	cubin, _, err := n.build(src, arch, false)
	return cubin, err
}

// CompilePTX builds one embedded module for arch and returns its cubin and
// the PTX NVRTC generated on the way (TestCubinDump compares both).
func (n *NVRTC) CompilePTX(src kernels.Source, arch string) (cubin, ptx []byte, err error) {
	return n.build(src, arch, true)
}

func (n *NVRTC) build(src kernels.Source, arch string, wantPTX bool) ([]byte, []byte, error) {
	hdrs := kernels.Headers()
	files := map[string]string{src.Name: src.Code}
	code := cString(src.Code)
	name := cString(src.Name)
	hsrc := make([][]byte, len(hdrs))
	hname := make([][]byte, len(hdrs))
	hsrcP := make([]uintptr, len(hdrs)+1)
	hnameP := make([]uintptr, len(hdrs)+1)
	for i, h := range hdrs {
		files[h.Name] = h.Code
		hsrc[i], hname[i] = cString(h.Code), cString(h.Name)
		hsrcP[i], hnameP[i] = uintptr(unsafe.Pointer(&hsrc[i][0])), uintptr(unsafe.Pointer(&hname[i][0]))
	}
	var prog uintptr
	if r := call(n.create, uintptr(unsafe.Pointer(&prog)), uintptr(unsafe.Pointer(&code[0])), uintptr(unsafe.Pointer(&name[0])), uintptr(len(hdrs)), uintptr(unsafe.Pointer(&hsrcP[0])), uintptr(unsafe.Pointer(&hnameP[0]))); r != 0 {
		return nil, nil, fmt.Errorf("nvrtc: nvrtcCreateProgram(%s): %s", src.Name, n.status(r))
	}
	defer call(n.destroy, uintptr(unsafe.Pointer(&prog)))
	opts := compileOptions(arch)
	cop := make([][]byte, len(opts))
	copP := make([]uintptr, len(opts))
	for i, o := range opts {
		cop[i] = cString(o)
		copP[i] = uintptr(unsafe.Pointer(&cop[i][0]))
	}
	rc := call(n.compile, prog, uintptr(len(opts)), uintptr(unsafe.Pointer(&copP[0])))
	runtime.KeepAlive(code)
	runtime.KeepAlive(name)
	runtime.KeepAlive(hsrc)
	runtime.KeepAlive(hname)
	runtime.KeepAlive(hsrcP)
	runtime.KeepAlive(hnameP)
	runtime.KeepAlive(cop)
	runtime.KeepAlive(copP)
	var logN uintptr
	call(n.logSize, prog, uintptr(unsafe.Pointer(&logN)))
	log := ""
	if logN > 1 {
		buf := make([]byte, logN)
		call(n.getLog, prog, uintptr(unsafe.Pointer(&buf[0])))
		log = string(buf)
	}
	if os.Getenv(VerboseEnv) != "" && log != "" {
		fmt.Fprintf(os.Stderr, "nvrtc %s %s:\n%s\n", src.Name, arch, strings.TrimRight(log, "\x00\n"))
	}
	if rc != 0 {
		return nil, nil, &CompileError{Kernel: src.Name, Arch: arch, Log: fmt.Sprintf("%s\n%s", n.status(rc), annotate(log, files))}
	}
	var size uintptr
	if r := call(n.cubinSize, prog, uintptr(unsafe.Pointer(&size))); r != 0 || size == 0 {
		return nil, nil, fmt.Errorf("nvrtc: no cubin for %s (%s): %s", src.Name, arch, n.status(r))
	}
	cubin := make([]byte, size)
	if r := call(n.getCubin, prog, uintptr(unsafe.Pointer(&cubin[0]))); r != 0 {
		return nil, nil, fmt.Errorf("nvrtc: nvrtcGetCUBIN(%s): %s", src.Name, n.status(r))
	}
	if !wantPTX {
		return cubin, nil, nil
	}
	if r := call(n.ptxSize, prog, uintptr(unsafe.Pointer(&size))); r != 0 || size == 0 {
		return nil, nil, fmt.Errorf("nvrtc: no PTX for %s (%s): %s", src.Name, arch, n.status(r))
	}
	ptx := make([]byte, size)
	if r := call(n.getPtx, prog, uintptr(unsafe.Pointer(&ptx[0]))); r != 0 {
		return nil, nil, fmt.Errorf("nvrtc: nvrtcGetPTX(%s): %s", src.Name, n.status(r))
	}
	return cubin, bytes.TrimRight(ptx, "\x00"), nil
}

// VerboseEnv, when set, makes NVRTC report each kernel's registers, shared
// memory and spills (ptxas -v) on stderr.
const VerboseEnv = "TURBODIFFUSION_NVRTC_VERBOSE"

// compileOptions: no -lineinfo, which crashes NVRTC 11.8 (Debian) on sm_90.
func compileOptions(arch string) []string {
	o := []string{"--gpu-architecture=" + arch, "--std=c++17", "-default-device", "-DNDEBUG"}
	if os.Getenv(VerboseEnv) != "" {
		o = append(o, "--ptxas-options=-v")
	}
	return o
}

// CacheDir is where compiled kernels are kept: $TURBODIFFUSION_KERNEL_CACHE
// or the user cache folder's turbodiffusion/kernels.
func CacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "turbodiffusion", "kernels")
}

// cacheKey hashes everything that changes the cubin: the module and header
// sources, the arch, NVRTC's version and the options.
func (n *NVRTC) cacheKey(src kernels.Source, arch string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", src.Name, src.Code, arch, n.Version())
	for _, hd := range kernels.Headers() {
		fmt.Fprintf(h, "%s\x00%s\x00", hd.Name, hd.Code)
	}
	fmt.Fprint(h, strings.Join(compileOptions(arch), " "))
	return hex.EncodeToString(h.Sum(nil))[:20]
}

// CompileCached returns the cubin from the disk cache or compiles and stores
// it. A cache that cannot be written only costs the next run a recompile.
func (n *NVRTC) CompileCached(src kernels.Source, arch string) (cubin []byte, hit bool, err error) {
	dir := CacheDir()
	file := filepath.Join(dir, fmt.Sprintf("%s-%s-nvrtc%s-%s.cubin", strings.TrimSuffix(src.Name, ".cu"), arch, n.Version(), n.cacheKey(src, arch)))
	if b, err := os.ReadFile(file); err == nil && len(b) > 0 {
		return b, true, nil
	}
	cubin, err = n.Compile(src, arch)
	if err != nil {
		return nil, false, err
	}
	if os.MkdirAll(dir, 0o755) == nil {
		tmp, err := os.CreateTemp(dir, ".tmp-*")
		if err == nil {
			_, werr := tmp.Write(cubin)
			cerr := tmp.Close()
			if errors.Join(werr, cerr) == nil {
				_ = os.Rename(tmp.Name(), file)
			} else {
				_ = os.Remove(tmp.Name())
			}
		}
	}
	return cubin, false, nil
}
