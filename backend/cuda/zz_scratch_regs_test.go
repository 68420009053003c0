package cuda

import (
	"bytes"
	"debug/elf"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/kernels"
)

func TestScratchRegs(t *testing.T) {
	n, err := LoadNVRTC()
	if err != nil {
		t.Skip(err)
	}
	for _, name := range []string{"conv3d.cu", "vae.cu", "text.cu", "attention.cu"} {
		src, _ := kernels.Module(name)
		for _, arch := range []string{"sm_90"} {
			cubin, err := n.Compile(src, arch)
			if err != nil {
				t.Fatal(err)
			}
			cubin[6] = 1
			cubin[20], cubin[21], cubin[22], cubin[23] = 1, 0, 0, 0
			f, err := elf.NewFile(bytes.NewReader(cubin))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range f.Sections {
				if strings.HasPrefix(s.Name, ".nv.info") {
					d, _ := s.Data()
					syms, _ := f.Symbols()
					for i := 0; i+4 <= len(d); {
						fm, at := d[i], d[i+1]
						switch fm {
						case 4:
							sz := int(d[i+2]) | int(d[i+3])<<8
							if (at == 0x2f || at == 0x12 || at == 0x23 || at == 0x11) && sz == 8 {
								si := int(uint32(d[i+4]) | uint32(d[i+5])<<8)
								v := uint32(d[i+8]) | uint32(d[i+9])<<8
								nm := ""
								if si-1 < len(syms) && si >= 1 {
									nm = syms[si-1].Name
								}
								t.Logf("%s attr %#x %s = %d", s.Name, at, nm, v)
							}
							i += 4 + sz
						default:
							i += 4
						}
					}
				}
				if strings.HasPrefix(s.Name, ".text.") || strings.HasPrefix(s.Name, ".nv.local.") || strings.HasPrefix(s.Name, ".nv.shared.") {
					t.Logf("%s %s: regs %d size %d", arch, s.Name, s.Info>>24, s.Size)
				}
			}
		}
	}
}
