package cuda

import (
	"fmt"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
)

// tensorMap is a CUtensorMap: 128 opaque bytes, passed by value as a
// __grid_constant__ kernel parameter.
type tensorMap [16]uint64

// CUtensorMapDataType values (cuda.h) for the element types the kernels copy.
const (
	tmapU8   = 0 // int8 codes travel as bytes; zero fill is int8 zero
	tmapU16  = 1
	tmapF32  = 7
	tmapBF16 = 9
)

// CUtensorMapSwizzle values: how the copy engine permutes 16-byte chunks
// inside each 32/64/128-byte row of a box (what the wgmma descriptors of
// kernels/hopper.cuh expect for the 128-byte case).
const (
	tmapSwizzleNone = 0
	tmapSwizzle32   = 1
	tmapSwizzle64   = 2
	tmapSwizzle128  = 3
)

// tensorMapSpec describes a tiled tensor map: a row-major tensor of up to 5
// dimensions, innermost first (Dims[0] is contiguous), boxes of Box elements
// copied per TMA instruction, zero fill out of bounds.
type tensorMapSpec struct {
	DType    int      // tmapU8, tmapBF16, ...
	ElemSize int      // bytes per element of DType
	Dims     []uint64 // elements per dimension, innermost first
	Strides  []uint64 // bytes between consecutive indices of Dims[1:], len(Dims)-1 entries
	Box      []uint32 // box size per dimension (1..256 each)
	Swizzle  int      // tmapSwizzle*
}

// check returns why the driver would reject s (its documented limits), so
// the error names the tensor rather than a bare CUDA_ERROR_INVALID_VALUE.
func (s tensorMapSpec) check(addr uintptr) error {
	r := len(s.Dims)
	switch {
	case r < 1 || r > 5:
		return fmt.Errorf("rank %d, want 1..5", r)
	case len(s.Strides) != r-1 || len(s.Box) != r:
		return fmt.Errorf("%d dims need %d strides and %d box sizes, got %d and %d", r, r-1, r, len(s.Strides), len(s.Box))
	case addr%16 != 0:
		return fmt.Errorf("address %#x is not 16-byte aligned", addr)
	case s.ElemSize <= 0:
		return fmt.Errorf("element size %d", s.ElemSize)
	}
	for i, d := range s.Dims {
		if d == 0 || d > 1<<32 {
			return fmt.Errorf("dimension %d is %d, want 1..2^32", i, d)
		}
		if s.Box[i] == 0 || s.Box[i] > 256 {
			return fmt.Errorf("box dimension %d is %d, want 1..256", i, s.Box[i])
		}
	}
	for i, st := range s.Strides {
		if st%16 != 0 || st >= 1<<40 {
			return fmt.Errorf("stride %d is %d bytes, want a multiple of 16 below 2^40", i+1, st)
		}
	}
	inner := int(s.Box[0]) * s.ElemSize
	if inner%16 != 0 {
		return fmt.Errorf("box row of %d bytes is not a multiple of 16", inner)
	}
	if lim := map[int]int{tmapSwizzle32: 32, tmapSwizzle64: 64, tmapSwizzle128: 128}[s.Swizzle]; lim > 0 && inner > lim {
		return fmt.Errorf("box row of %d bytes exceeds the %d-byte swizzle span", inner, lim)
	}
	return nil
}

// tensorMapArgs are the arguments of one cuTensorMapEncodeTiled call after
// the output pointer: what the driver sees (only the first Rank entries of
// each array are read). Kept apart from the call so a test can check every
// call site's arguments without a GPU.
type tensorMapArgs struct {
	DType, Rank uintptr
	Addr        uintptr
	Dims        [5]uint64
	Strides     [4]uint64
	Box, EStr   [5]uint32
	Interleave  uintptr
	Swizzle     uintptr
	L2Promotion uintptr
	OOBFill     uintptr
}

// args maps s over device memory at addr to the driver's arguments: element
// strides 1, no interleave, 128-byte L2 promotion, zero fill.
func (s tensorMapSpec) args(addr uintptr) tensorMapArgs {
	const interleaveNone, l2Promote128, oobZero = 0, 2, 0
	a := tensorMapArgs{DType: uintptr(s.DType), Rank: uintptr(len(s.Dims)), Addr: addr,
		Interleave: interleaveNone, Swizzle: uintptr(s.Swizzle), L2Promotion: l2Promote128, OOBFill: oobZero}
	copy(a.Dims[:], s.Dims)
	copy(a.Strides[:], s.Strides)
	copy(a.Box[:], s.Box)
	for i := range a.EStr {
		a.EStr[i] = 1
	}
	return a
}

// encodeTensorMap builds the CUtensorMap for s over device memory at addr
// (cuTensorMapEncodeTiled with s.args). It is the one encoder every TMA
// kernel's launcher uses. what names the tensor in errors. Caller holds the
// device.
func (b *Backend) encodeTensorMap(what string, addr uintptr, s tensorMapSpec) *tensorMap {
	if b.drv.cuTensorMapEncodeTiled == 0 {
		backend.Fail("cuda: %s: this driver has no cuTensorMapEncodeTiled (CUDA 12+ needed for the TMA kernels)", what)
	}
	if err := s.check(addr); err != nil {
		backend.Fail("cuda: %s: tensor map %v (box %v): %v", what, s.Dims, s.Box, err)
	}
	buf := new([24]uint64) // the encoder wants 64-byte alignment
	off := (64 - int(uintptr(unsafe.Pointer(&buf[0]))%64)) % 64 / 8
	a := s.args(addr)
	r := call(b.drv.cuTensorMapEncodeTiled, uintptr(unsafe.Pointer(&buf[off])), a.DType, a.Rank, a.Addr,
		uintptr(unsafe.Pointer(&a.Dims[0])), uintptr(unsafe.Pointer(&a.Strides[0])), uintptr(unsafe.Pointer(&a.Box[0])),
		uintptr(unsafe.Pointer(&a.EStr[0])), a.Interleave, a.Swizzle, a.L2Promotion, a.OOBFill)
	if r != 0 {
		backend.FailErr(b.drv.check(fmt.Sprintf("cuTensorMapEncodeTiled(%s: dims %v, box %v, swizzle %d)", what, s.Dims, s.Box, s.Swizzle), r))
	}
	var m tensorMap
	copy(m[:], buf[off:off+16])
	return &m
}

// tensorMapRows describes a row-major matrix [rows][cols] of elemSize-byte
// elements (rows packed, cols·elemSize bytes apart) with boxes of boxCols ×
// boxRows and the given swizzle: the common 2-D case.
func tensorMapRows(dtype, elemSize int, rows, cols int64, boxRows, boxCols, swizzle int) tensorMapSpec {
	return tensorMapSpec{
		DType: dtype, ElemSize: elemSize,
		Dims:    []uint64{uint64(cols), uint64(rows)},
		Strides: []uint64{uint64(cols) * uint64(elemSize)},
		Box:     []uint32{uint32(boxCols), uint32(boxRows)},
		Swizzle: swizzle,
	}
}

// tensorMapBF16 describes a bf16 matrix of outer rows × inner elements,
// rowBytes apart (a row may be a slice of a wider one), boxes of boxInner ×
// boxOuter: the attention and SLA kernels' Q/K/V tiles and the convolution's
// activation and weight tiles.
func tensorMapBF16(inner, outer, rowBytes int64, boxInner, boxOuter, swizzle int) tensorMapSpec {
	return tensorMapSpec{
		DType: tmapBF16, ElemSize: 2,
		Dims:    []uint64{uint64(inner), uint64(outer)},
		Strides: []uint64{uint64(rowBytes)},
		Box:     []uint32{uint32(boxInner), uint32(boxOuter)},
		Swizzle: swizzle,
	}
}
