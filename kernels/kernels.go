// Package kernels holds the CUDA C++ sources the CUDA backend compiles with
// NVRTC at run time. They are embedded so the binary needs no toolkit; each
// .cu file is one module and may include the in-memory header common.cuh.
package kernels

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.cu *.cuh
var files embed.FS

// Source is one embedded file.
type Source struct {
	Name string // file name, e.g. "attention.cu"
	Code string
}

// Arch returns the NVRTC target for module name on a device whose base
// target is deviceArch ("sm_90"), and false when the module does not apply
// to that device. Files named *_sm90a.cu use Hopper-only instructions
// (wgmma) and build only for sm_90a, on sm_90 devices.
func Arch(name, deviceArch string) (string, bool) {
	if strings.HasSuffix(name, "_sm90a.cu") {
		return "sm_90a", deviceArch == "sm_90"
	}
	return deviceArch, true
}

// Modules lists every .cu file, sorted by name.
func Modules() []Source { return list(".cu") }

// Headers lists every .cuh file and the generated smem.cuh (available to
// #include by name), sorted by name.
func Headers() []Source {
	h := append(list(".cuh"), smemHeader())
	sort.Slice(h, func(i, j int) bool { return h[i].Name < h[j].Name })
	return h
}

// Module returns the named .cu file; ok is false when it does not exist.
func Module(name string) (Source, bool) {
	b, err := files.ReadFile(name)
	if err != nil || !strings.HasSuffix(name, ".cu") {
		return Source{}, false
	}
	return Source{Name: name, Code: string(b)}, true
}

func list(suffix string) []Source {
	ents, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(err) // embedded FS: cannot fail
	}
	var out []Source
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		b, _ := files.ReadFile(e.Name())
		out = append(out, Source{Name: e.Name(), Code: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
