package checkpoint

import (
	"archive/zip"
	"encoding/binary"
	"io"
	"math"
)

func zipWriter(w io.Writer) *zip.Writer { return zip.NewWriter(w) }

func le32(f float32) []byte { return binary.LittleEndian.AppendUint32(nil, math.Float32bits(f)) }
