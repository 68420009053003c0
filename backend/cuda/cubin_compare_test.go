package cuda

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
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
// cubin and PTX (per NVRTC version and arch) and, when the folder already
// holds those of an earlier tree (*.cubin, *.ptx), compares them kernel by
// kernel and PTX function by function. A refactor of the kernel sources
// that must not change the machine code is checked by running this test
// once before the change (dump) and once after (compare). Kernels added
// since the dump, the module-level PTX declarations they bring, and the
// numbers NVVM gives functions by their position in the module
// (ptxNumbering) are logged, not failures: they change no existing kernel.
const CubinDumpEnv = "TURBODIFFUSION_CUBIN_DUMP"

// CubinOnlyEnv, when set, is a regular expression: only modules whose name
// matches are compiled and compared (the others keep their dumps).
const CubinOnlyEnv = "TURBODIFFUSION_CUBIN_ONLY"

// kernelCode maps each kernel in a cubin to the bytes that decide what it
// executes: its .text section, its .nv.info attributes (registers, params,
// barriers) and its static shared/constant sections.
func kernelCode(t *testing.T, cubin []byte) map[string][]byte {
	// NVIDIA's cubins put their own ABI version in the ELF version fields,
	// which debug/elf rejects; the layout is plain ELF64.
	c := append([]byte(nil), cubin...)
	if len(c) > 24 {
		c[6] = 1
		c[20], c[21], c[22], c[23] = 1, 0, 0, 0
	}
	f, err := elf.NewFile(bytes.NewReader(c))
	if err != nil {
		t.Fatalf("parse cubin: %v", err)
	}
	// Symbol index → name (a section symbol by its section's name): the
	// .nv.info records refer to symbols by index, which shifts when a module
	// gains or loses kernels without changing any kernel.
	syms, _ := f.Symbols()
	symName := func(i uint32) string {
		if i == 0 || int(i) > len(syms) {
			return fmt.Sprintf("sym#%d", i)
		}
		sy := syms[i-1]
		if sy.Name == "" && int(sy.Section) < len(f.Sections) {
			return "section " + f.Sections[sy.Section].Name
		}
		return sy.Name
	}
	// records walks .nv.info attribute records: format 4 has a 16-bit size
	// and a payload, format 3 a 16-bit value, format 1/2 nothing.
	records := func(b []byte, each func(attr byte, pay []byte)) {
		for i := 0; i+2 <= len(b); {
			fm, attr := b[i], b[i+1]
			switch fm {
			case 4:
				n := int(b[i+2]) | int(b[i+3])<<8
				each(attr, b[i+4:min(i+4+n, len(b))])
				i += 4 + n
			case 3:
				each(attr, b[i+2:i+4])
				i += 4
			default:
				each(attr, nil)
				i += 2
			}
		}
	}
	const paramCBank = 0x0a // EIATTR_PARAM_CBANK: symbol index, offset, size
	out := map[string][]byte{}
	for _, s := range f.Sections {
		if s.Name != ".nv.info" {
			continue
		}
		// The module-wide attributes of each kernel (register count, frame
		// and stack sizes): symbol index then value.
		b, err := s.Data()
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		records(b, func(attr byte, pay []byte) {
			if len(pay) == 8 {
				k := symName(binary.LittleEndian.Uint32(pay))
				out[k] = append(out[k], fmt.Sprintf("attr %#x = %d\n", attr, binary.LittleEndian.Uint32(pay[4:]))...)
			}
		})
	}
	for _, s := range f.Sections {
		for _, p := range []string{".text.", ".nv.info.", ".nv.shared.", ".nv.constant0."} {
			if !strings.HasPrefix(s.Name, p) {
				continue
			}
			name := strings.TrimPrefix(s.Name, p)
			if os.Getenv("TURBODIFFUSION_CUBIN_SECTIONS") != "" {
				name += " " + p
			}
			var b []byte
			if s.Type != elf.SHT_NOBITS {
				b, err = s.Data()
				if err != nil {
					t.Fatalf("%s: %v", s.Name, err)
				}
			}
			if p == ".nv.info." {
				var n []byte
				records(b, func(attr byte, pay []byte) {
					if attr == paramCBank && len(pay) >= 4 {
						n = append(n, fmt.Sprintf("attr %#x %s %x\n", attr, symName(binary.LittleEndian.Uint32(pay)), pay[4:])...)
					} else {
						n = append(n, fmt.Sprintf("attr %#x %x\n", attr, pay)...)
					}
				})
				b = n
			}
			// Section header facts too (size of NOBITS shared memory).
			hdr := []byte(fmt.Sprintf("%s size=%d\n", p, s.Size))
			out[name] = append(append(out[name], hdr...), b...)
		}
	}
	return out
}

// ptxFunctions splits a module's PTX into its functions (.entry and .func
// bodies, keyed by name) and the module-level rest (version, target,
// globals, prototypes: key "(module)"). Identical PTX per kernel means the
// kernel source change did not change what NVVM generated; the cubin
// comparison then says whether ptxas did the same.
func ptxFunctions(_ *testing.T, ptx []byte) map[string][]byte {
	out := map[string][]byte{}
	lines := strings.SplitAfter(string(ptx), "\n")
	cur := "(module)"
	depth := 0
	for _, l := range lines {
		tl := strings.TrimSpace(l)
		if depth == 0 && (strings.Contains(tl, ".entry ") || strings.Contains(tl, ".func ")) && !strings.HasSuffix(tl, ";") {
			cur = ptxFuncName(tl)
		}
		if strings.HasPrefix(tl, "// Compiler Build ID") || strings.HasPrefix(tl, "// Cuda compilation tools") || strings.HasPrefix(tl, "// Based on NVVM") {
			l = "" // the compiler's own version lines
		}
		out[cur] = append(out[cur], ptxNumbering(l)...)
		depth += strings.Count(tl, "{") - strings.Count(tl, "}")
		if depth == 0 && tl == "}" {
			cur = "(module)"
		}
	}
	return out
}

// ptxLabel and ptxInternal match the numbers NVVM gives a module's
// functions in their branch labels ($L__BB<function>_<block>) and its
// internal helpers ($__internal_<n>_$...): they count the functions before
// them in the module, so adding a kernel renumbers every later one without
// changing its code.
var (
	ptxLabel    = regexp.MustCompile(`\$L__BB[0-9]+_`)
	ptxInternal = regexp.MustCompile(`\$__internal_[0-9]+_\$`)
)

// ptxNumbering drops those module-position numbers from s (a PTX line or
// a kernel name), so that a kernel compares equal to itself wherever it
// sits in its module.
func ptxNumbering(s string) string {
	return ptxInternal.ReplaceAllString(ptxLabel.ReplaceAllString(s, "$$L__BB_"), "$$__internal_$$")
}

// ptxChange says how two versions of a PTX function differ: whether they
// hold the same instructions once register numbers are dropped (NVVM
// renumbers registers and reorders independent instructions when the
// source is merely restructured), or how many lines each has of its own.
func ptxChange(a, b []byte) string {
	reg := regexp.MustCompile(`%([a-z]+)[0-9]+`)
	count := func(x []byte) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(string(x), "\n") {
			l = strings.TrimSpace(reg.ReplaceAllString(l, "%$1"))
			if l != "" && !strings.HasPrefix(l, "$L__") && !strings.HasPrefix(l, "//") {
				m[l]++
			}
		}
		return m
	}
	ca, cb := count(a), count(b)
	only := func(x, y map[string]int) (n int) {
		for l, c := range x {
			if c > y[l] {
				n += c - y[l]
			}
		}
		return n
	}
	na, nb := only(ca, cb), only(cb, ca)
	if na == 0 && nb == 0 {
		return "same instructions; only register numbers or the order of instructions differ"
	}
	return fmt.Sprintf("instructions differ: %d lines only before, %d only after", na, nb)
}

// ptxFuncName: the name in ".visible .entry name(" or
// ".func (.param .b32 ret) name(".
func ptxFuncName(l string) string {
	i := strings.Index(l, ".entry ")
	if i < 0 {
		i = strings.Index(l, ".func ")
	}
	r := strings.TrimSpace(l[strings.Index(l[i:], " ")+i:])
	if strings.HasPrefix(r, "(") {
		if j := strings.Index(r, ")"); j >= 0 {
			r = strings.TrimSpace(r[j+1:])
		}
	}
	if j := strings.IndexAny(r, "( "); j >= 0 {
		r = r[:j]
	}
	return r
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
	if os.Getenv("TURBODIFFUSION_CUBIN_NO_COMPILE") != "" {
		compilers = nil // compare the dumps already there
	}
	// The sm_90a modules first (they change most often), one job each.
	type job struct {
		n    *NVRTC
		m    kernels.Source
		arch string
	}
	var jobs []job
	for _, n := range compilers {
		for _, base := range []string{"sm_80", "sm_90"} {
			for _, m := range kernels.Modules() {
				arch, ok := kernels.Arch(m.Name, base)
				if !ok || (arch == "sm_90a" && n.Major < 12) || !only.MatchString(m.Name) {
					continue
				}
				jobs = append(jobs, job{n, m, arch})
			}
		}
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].arch == "sm_90a" && jobs[j].arch != "sm_90a" })
	for _, j := range jobs {
		cubin, ptx, err := j.n.CompilePTX(j.m, j.arch)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		sub := filepath.Join(dir, "nvrtc"+j.n.Version(), j.arch)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, j.m.Name+".cubin.new"), cubin, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, j.m.Name+".ptx.new"), ptx, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %s nvrtc %s compiled", j.m.Name, j.arch, j.n.Version())
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
		mod := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(p), ".new"), ".cubin"), ".ptx")
		var into map[string][]byte
		switch {
		case !only.MatchString(mod):
			return nil
		case strings.HasSuffix(p, ".cubin"), strings.HasSuffix(p, ".ptx"):
			into = base
		case strings.HasSuffix(p, ".cubin.new"), strings.HasSuffix(p, ".ptx.new"):
			into = now
		default:
			return nil
		}
		code := kernelCode
		if strings.Contains(filepath.Base(p), ".ptx") {
			rel += " ptx"
			code = ptxFunctions
		}
		for k, c := range code(t, b) {
			key := rel + " " + ptxNumbering(k)
			if prev, dup := into[key]; dup && !bytes.Equal(prev, c) {
				// A module-local helper ($__internal_…) of the same name in
				// two modules: compare it per module.
				key += " in " + mod
			}
			into[key] = c
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
		case strings.Contains(k, " ptx (module)"):
			// Module-level declarations (the extern shared arrays and
			// helper prototypes of kernels added to the module): no
			// kernel's code.
			same++
			t.Logf("module-level PTX changed: %s (%s)", k, ptxChange(base[k], b))
		default:
			changed++
			if strings.Contains(k, " ptx ") {
				t.Errorf("changed: %s (%s)", k, ptxChange(base[k], b))
			} else {
				t.Errorf("changed: %s", k)
			}
		}
	}
	for k := range now {
		if _, ok := base[k]; !ok {
			t.Logf("new kernel: %s", k) // adding a kernel changes no other
		}
	}
	t.Logf("%d kernels identical, %d changed, %d removed", same, changed, removed)
}

// TestPTXNumbering: a function moved within its module (other label and
// helper numbers) compares equal; one changed instruction does not. No GPU
// or NVRTC needed.
func TestPTXNumbering(t *testing.T) {
	f := func(fn, helper int, op string) []byte {
		return []byte(fmt.Sprintf(".visible .entry k(\n)\n{\n\t@%%p1 bra \t$L__BB%d_2;\n\tcall.uni $__internal_%d_$__cuda_sm20_div_s64, (%%rd1);\n\t%s \t%%f1, %%f2;\n$L__BB%d_2:\n\tret;\n}\n", fn, helper, op, fn))
	}
	a := ptxFunctions(t, f(8, 0, "ex2.approx.f32"))["k"]
	if b := ptxFunctions(t, f(16, 13, "ex2.approx.f32"))["k"]; !bytes.Equal(a, b) {
		t.Errorf("renumbered function differs:\n%s\n%s", a, b)
	}
	if b := ptxFunctions(t, f(8, 0, "ex2.approx.ftz.f32"))["k"]; bytes.Equal(a, b) {
		t.Error("a changed instruction compares equal")
	}
	if got := ptxNumbering("$__internal_3_$__cuda_sm20_rcp_rn_f32_slowpath"); got != "$__internal_$__cuda_sm20_rcp_rn_f32_slowpath" {
		t.Errorf("helper name %q", got)
	}
}
