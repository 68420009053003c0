package cuda

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/kernels"
)

// CubinDumpEnv names a folder where TestCubinDump writes every module's
// cubin (per arch) and, when the folder already holds cubins from an earlier
// tree, compares them kernel by kernel. A refactor of the kernel sources
// that must not change the machine code is checked by running this test
// once before the change (dump) and once after (compare).
const CubinDumpEnv = "TURBODIFFUSION_CUBIN_DUMP"

// CubinOnlyEnv, when set, is a regular expression: only modules whose name
// matches are compiled and compared (the others keep their dumps).
const CubinOnlyEnv = "TURBODIFFUSION_CUBIN_ONLY"

// kernelCode maps each kernel in a cubin to the bytes that decide what it
// executes: its .text section, its .nv.info attributes (registers, params,
// barriers) and its static shared/constant sections.
func kernelCode(t *testing.T, cubin []byte) map[string][]byte {
	f, err := elf.NewFile(bytes.NewReader(cubin))
	if err != nil {
		t.Fatalf("parse cubin: %v", err)
	}
	out := map[string][]byte{}
	for _, s := range f.Sections {
		for _, p := range []string{".text.", ".nv.info.", ".nv.shared.", ".nv.constant0."} {
			if !strings.HasPrefix(s.Name, p) {
				continue
			}
			name := strings.TrimPrefix(s.Name, p)
			var b []byte
			if s.Type != elf.SHT_NOBITS {
				b, err = s.Data()
				if err != nil {
					t.Fatalf("%s: %v", s.Name, err)
				}
			}
			// Section header facts too (size of NOBITS shared memory).
			hdr := []byte(fmt.Sprintf("%s size=%d\n", p, s.Size))
			out[name] = append(append(out[name], hdr...), b...)
		}
	}
	return out
}

func TestCubinDump(t *testing.T) {
	dir := os.Getenv(CubinDumpEnv)
	if dir == "" {
		t.Skipf("%s not set", CubinDumpEnv)
	}
	only := regexp.MustCompile(os.Getenv(CubinOnlyEnv))
	var compilers []*NVRTC
	if n, err := LoadNVRTC(); err == nil {
		compilers = append(compilers, n)
	}
	if d := os.Getenv(SM90ALibsEnv); d != "" {
		n, err := LoadNVRTCFrom([]string{d})
		if err != nil {
			t.Fatal(err)
		}
		compilers = append(compilers, n)
	}
	for _, n := range compilers {
		for _, base := range []string{"sm_80", "sm_90"} {
			for _, m := range kernels.Modules() {
				arch, ok := kernels.Arch(m.Name, base)
				if !ok || (arch == "sm_90a" && n.Major < 12) || !only.MatchString(m.Name) {
					continue
				}
				cubin, err := n.Compile(m, arch)
				if err != nil {
					t.Errorf("%v", err)
					continue
				}
				sub := filepath.Join(dir, "nvrtc"+n.Version(), arch)
				if err := os.MkdirAll(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(sub, m.Name+".cubin")
				if err := os.WriteFile(file+".new", cubin, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// Compare every kernel found in the baseline (*.cubin) with the new
	// build (*.cubin.new), across modules: a kernel may move between files.
	base := map[string][]byte{}
	now := map[string][]byte{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(p))
		b, _ := os.ReadFile(p)
		var into map[string][]byte
		switch {
		case !only.MatchString(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(p), ".new"), ".cubin")):
			return nil
		case strings.HasSuffix(p, ".cubin"):
			into = base
		case strings.HasSuffix(p, ".cubin.new"):
			into = now
		default:
			return nil
		}
		for k, code := range kernelCode(t, b) {
			key := rel + " " + k
			if _, dup := into[key]; dup {
				t.Errorf("kernel %s defined twice", key)
			}
			into[key] = code
		}
		return nil
	})
	if len(base) == 0 {
		t.Logf("no baseline: rename *.cubin.new to *.cubin in %s to make this build the baseline", dir)
		return
	}
	var keys []string
	for k := range base {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	same, removed, changed := 0, 0, 0
	for _, k := range keys {
		b, ok := now[k]
		switch {
		case !ok:
			removed++
			t.Logf("removed: %s", k)
		case bytes.Equal(b, base[k]):
			same++
		default:
			changed++
			t.Errorf("changed: %s", k)
		}
	}
	for k := range now {
		if _, ok := base[k]; !ok {
			t.Errorf("new kernel: %s", k)
		}
	}
	t.Logf("%d kernels identical, %d changed, %d removed", same, changed, removed)
}
