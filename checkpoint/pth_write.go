package checkpoint

import (
	"archive/zip"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"path/filepath"
	"strconv"
	"strings"
)

// pthAlignment is where torch.save starts every record's data (its
// .storage_alignment), so a loader may map storages in place.
const pthAlignment = 64

// WritePth writes tensors as a torch.save zip archive that torch.load reads
// as an OrderedDict (in the given order), the layout torch >= 2.x writes:
// stored entries <name>/data.pkl, .format_version, .storage_alignment,
// byteorder, data/<key>..., version, .data/serialization_id, each record's
// data aligned to 64 bytes. The file is written atomically.
func WritePth(path string, tensors []Tensor) error {
	return writePth(path, tensors, newPickler())
}

func writePth(path string, tensors []Tensor, p *pickler) error {
	sizes, err := checkTensors(path, tensors)
	if err != nil {
		return err
	}
	for i := range tensors {
		if _, ok := storageClass[tensors[i].DType]; !ok && v3DTypeName[tensors[i].DType] == "" {
			return fmt.Errorf("%s: tensor %q: dtype %v cannot be written to a .pth", path, tensors[i].Name, tensors[i].DType)
		}
	}
	pkl := p.encodeStateDict(tensors)
	prefix := archiveName(path) + "/"
	return writeAtomic(path, func(w io.Writer) error {
		zw := &alignedZip{w: zip.NewWriter(w), path: path}
		zw.add(prefix+"data.pkl", pkl)
		zw.add(prefix+".format_version", []byte("1"))
		zw.add(prefix+".storage_alignment", []byte(strconv.Itoa(pthAlignment)))
		zw.add(prefix+"byteorder", []byte("little"))
		id := sha256.New()
		id.Write(pkl)
		for i := range tensors {
			if zw.err != nil {
				return zw.err
			}
			data, err := tensors[i].bytes(path, sizes[i])
			if err != nil {
				return err
			}
			crc := zw.add(prefix+"data/"+strconv.Itoa(i), data)
			fmt.Fprintf(id, "%d:%08x;", len(data), crc)
		}
		zw.add(prefix+"version", []byte("3\n"))
		zw.add(prefix+".data/serialization_id", serializationID(id.Sum(nil)))
		if zw.err != nil {
			return zw.err
		}
		if err := zw.w.Close(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	})
}

// archiveName is the top folder torch.save uses: the file's base name
// without its extension (characters outside [A-Za-z0-9._-] replaced).
func archiveName(path string) string {
	base := filepath.Base(path)
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	name := strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, base)
	if name == "" || name == "." || name == ".." {
		return "archive"
	}
	return name
}

// serializationID is a 40-digit decimal record id (torch writes one; this
// one is derived from the pickle and the records' sizes and CRCs, so the
// same tensors always give the same file).
func serializationID(sum []byte) []byte {
	s := new(big.Int).SetBytes(sum).String()
	for len(s) < 40 {
		s = "0" + s
	}
	return []byte(s[:40])
}

// alignedZip writes stored records whose data start on pthAlignment
// boundaries, padding the local header's extra field as torch does (an
// "FB" field of 'Z's). It tracks the offset itself: a local header is 30
// bytes + name + extra, and no data descriptor follows unless the entry
// needs zip64 sizes.
type alignedZip struct {
	w    *zip.Writer
	path string
	off  int64
	err  error
}

// add writes one record and returns its CRC-32.
func (z *alignedZip) add(name string, data []byte) uint32 {
	if z.err != nil {
		return 0
	}
	pad := (pthAlignment - (z.off+30+int64(len(name))+4)%pthAlignment) % pthAlignment
	extra := make([]byte, 4+pad)
	extra[0], extra[1] = 'F', 'B'
	extra[2], extra[3] = byte(pad), byte(pad>>8)
	for i := 4; i < len(extra); i++ {
		extra[i] = 'Z'
	}
	fh := &zip.FileHeader{
		Name:               name,
		Method:             zip.Store,
		CRC32:              crc32.ChecksumIEEE(data),
		CompressedSize64:   uint64(len(data)),
		UncompressedSize64: uint64(len(data)),
		Extra:              extra,
	}
	descriptor := int64(0)
	if uint64(len(data)) >= 0xffffffff {
		// Sizes that need zip64 go in a zip64 data descriptor.
		fh.Flags |= 0x8
		descriptor = 24
	}
	fw, err := z.w.CreateRaw(fh)
	if err == nil {
		_, err = fw.Write(data)
	}
	if err != nil {
		z.err = fmt.Errorf("%s: writing %s: %w", z.path, name, err)
		return 0
	}
	z.off += 30 + int64(len(name)) + int64(len(extra)) + int64(len(data)) + descriptor
	return fh.CRC32
}
