// Package nvenc talks to the NVIDIA driver's hardware video encoder (NVENC)
// through libnvidia-encode.so.1, loaded at run time through purego like the
// CUDA libraries (no cgo). The struct layouts below are written from the
// NVENC API's documented definitions (Video Codec SDK nvEncodeAPI.h), only
// as far as this package uses them; the tests check their sizes and offsets.
//
// Probe opens an encode session on a GPU's CUDA context and reports the
// codecs, input formats and limits the driver offers, or the driver's exact
// status when it has no encoder for that GPU (data-centre chips such as the
// H100/H200 are believed to lack the NVENC engine).
package nvenc

import (
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Version is an NVENC API version.
type Version struct{ Major, Minor uint32 }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

func (v Version) less(w Version) bool {
	return v.Major < w.Major || v.Major == w.Major && v.Minor < w.Minor
}

// word is NVENCAPI_VERSION: the major version in the low byte, the minor
// in the top byte.
func (v Version) word() uint32 { return v.Major | v.Minor<<24 }

// structVersion is NVENCAPI_STRUCT_VERSION(n), the version word every
// struct starts with: the API version word, the struct's own version in
// bits 16-23 and 7 in the top nibble. The driver answers a mismatch with
// NV_ENC_ERR_INVALID_VERSION.
func (v Version) structVersion(n uint32) uint32 { return v.word() | n<<16 | 7<<28 }

// decodeMaxVersion reads NvEncodeAPIGetMaxSupportedVersion's answer: the
// minor version in the low 4 bits, the major above them.
func decodeMaxVersion(m uint32) Version { return Version{Major: m >> 4, Minor: m & 0xf} }

// The API versions whose layouts of the structs used here are known: the
// function list (struct version 2, 2552 bytes), the open-session
// parameters (version 1) and the caps query (version 1) are the same in
// every SDK header from 11.1 through 13.0.
var (
	newestAPI = Version{13, 0}
	oldestAPI = Version{11, 1}
)

// negotiate picks the API version to speak with a driver whose newest is
// driverMax: ours when the driver is newer, the driver's when it is older,
// an error when it predates the layouts known here.
func negotiate(driverMax Version) (Version, error) {
	if driverMax.less(oldestAPI) {
		return Version{}, fmt.Errorf("nvenc: the driver's encoder API is %s, older than %s (the oldest this program speaks); update the NVIDIA driver", driverMax, oldestAPI)
	}
	if newestAPI.less(driverMax) {
		return newestAPI, nil
	}
	return driverMax, nil
}

// Status is an NVENCSTATUS.
type Status uint32

// The statuses the probe tells apart.
const (
	StatusSuccess           Status = 0
	StatusNoEncodeDevice    Status = 1
	StatusUnsupportedDevice Status = 2
	StatusInvalidParam      Status = 8
	StatusInvalidVersion    Status = 15
)

// statusText names the NVENCSTATUS values in enum order, with a short
// meaning each.
var statusText = [...][2]string{
	{"NV_ENC_SUCCESS", "no error"},
	{"NV_ENC_ERR_NO_ENCODE_DEVICE", "no encode-capable device was found: this GPU has no NVENC engine, or the driver offers none"},
	{"NV_ENC_ERR_UNSUPPORTED_DEVICE", "the device given is not supported by the encoder (no NVENC engine on this GPU)"},
	{"NV_ENC_ERR_INVALID_ENCODERDEVICE", "the encoder device given is not valid"},
	{"NV_ENC_ERR_INVALID_DEVICE", "the device given is invalid"},
	{"NV_ENC_ERR_DEVICE_NOT_EXIST", "the device is no longer available; the session must be recreated"},
	{"NV_ENC_ERR_INVALID_PTR", "a pointer argument is invalid"},
	{"NV_ENC_ERR_INVALID_EVENT", "the completion event is invalid"},
	{"NV_ENC_ERR_INVALID_PARAM", "a parameter is invalid"},
	{"NV_ENC_ERR_INVALID_CALL", "a call was made out of order"},
	{"NV_ENC_ERR_OUT_OF_MEMORY", "out of memory"},
	{"NV_ENC_ERR_ENCODER_NOT_INITIALIZED", "the encoder is not initialized"},
	{"NV_ENC_ERR_UNSUPPORTED_PARAM", "a parameter is not supported"},
	{"NV_ENC_ERR_LOCK_BUSY", "the output buffer is still busy; retry"},
	{"NV_ENC_ERR_NOT_ENOUGH_BUFFER", "the buffer given is too small"},
	{"NV_ENC_ERR_INVALID_VERSION", "a struct version word does not match what this driver expects"},
	{"NV_ENC_ERR_MAP_FAILED", "mapping the input resource failed"},
	{"NV_ENC_ERR_NEED_MORE_INPUT", "the encoder needs more input frames before it gives output"},
	{"NV_ENC_ERR_ENCODER_BUSY", "the encoder is busy; retry"},
	{"NV_ENC_ERR_EVENT_NOT_REGISTERD", "the completion event was not registered"},
	{"NV_ENC_ERR_GENERIC", "an unknown internal error"},
	{"NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY", "the feature is not licensed on this system"},
	{"NV_ENC_ERR_UNIMPLEMENTED", "the feature is not implemented in this version"},
	{"NV_ENC_ERR_RESOURCE_REGISTER_FAILED", "registering the resource failed"},
	{"NV_ENC_ERR_RESOURCE_NOT_REGISTERED", "the resource was not registered"},
	{"NV_ENC_ERR_RESOURCE_NOT_MAPPED", "the resource was not mapped"},
	{"NV_ENC_ERR_NEED_MORE_OUTPUT", "the encoder needs another output buffer"},
}

// Name is the status's enum name ("NV_ENC_ERR_NO_ENCODE_DEVICE").
func (s Status) Name() string {
	if int(s) < len(statusText) {
		return statusText[s][0]
	}
	return fmt.Sprintf("NVENCSTATUS %d", uint32(s))
}

// Meaning says what the status means.
func (s Status) Meaning() string {
	if int(s) < len(statusText) {
		return statusText[s][1]
	}
	return "a status this program does not know (newer driver?)"
}

func (s Status) String() string { return fmt.Sprintf("%s (%d): %s", s.Name(), uint32(s), s.Meaning()) }

// StatusError is a failed NVENC call.
type StatusError struct {
	Call   string // "nvEncOpenEncodeSessionEx"
	Status Status
	Detail string // the driver's nvEncGetLastErrorString, when it gave one
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("nvenc: %s: %s", e.Call, e.Status)
	if e.Detail != "" {
		s += " (driver: " + e.Detail + ")"
	}
	return s
}

// GUID is the Windows-style GUID the API names codecs with.
type GUID struct {
	Data1        uint32
	Data2, Data3 uint16
	Data4        [8]byte
}

func (g GUID) String() string {
	return fmt.Sprintf("%08X-%04X-%04X-%02X%02X-%X", g.Data1, g.Data2, g.Data3, g.Data4[0], g.Data4[1], g.Data4[2:])
}

// words is the GUID as the two 8-byte words a by-value GUID argument
// travels in (a 16-byte struct of integers goes in two integer registers
// on amd64 and arm64).
func (g GUID) words() (lo, hi uintptr) {
	w := *(*[2]uint64)(unsafe.Pointer(&g))
	return uintptr(w[0]), uintptr(w[1])
}

// The codec GUIDs (NV_ENC_CODEC_*_GUID).
var (
	CodecH264 = GUID{0x6bc82762, 0x4e63, 0x4ca4, [8]byte{0xaa, 0x85, 0x1e, 0x50, 0xf3, 0x21, 0xf6, 0xbf}}
	CodecHEVC = GUID{0x790cdc88, 0x4522, 0x4d7b, [8]byte{0x94, 0x25, 0xbd, 0xa9, 0x97, 0x5f, 0x76, 0x03}}
	CodecAV1  = GUID{0x0a352289, 0x0aa7, 0x4759, [8]byte{0x86, 0x2d, 0x5d, 0x15, 0xcd, 0x16, 0xd2, 0x54}}
)

// CodecName is "H.264", "HEVC", "AV1", or the GUID of a codec not known here.
func CodecName(g GUID) string {
	switch g {
	case CodecH264:
		return "H.264"
	case CodecHEVC:
		return "HEVC"
	case CodecAV1:
		return "AV1"
	}
	return "codec " + g.String()
}

// BufferFormat is an NV_ENC_BUFFER_FORMAT (input surface layout).
type BufferFormat uint32

// The input formats this program may feed the encoder.
const (
	FormatNV12 BufferFormat = 0x1
	FormatARGB BufferFormat = 0x1000000
	FormatABGR BufferFormat = 0x10000000
)

var formatNames = map[BufferFormat]string{
	0x0: "UNDEFINED", 0x1: "NV12", 0x10: "YV12", 0x100: "IYUV", 0x1000: "YUV444",
	0x10000: "YUV420_10BIT", 0x100000: "YUV444_10BIT", 0x1000000: "ARGB", 0x2000000: "ARGB10",
	0x4000000: "AYUV", 0x10000000: "ABGR", 0x20000000: "ABGR10", 0x40000000: "U8",
	0x40000001: "NV16", 0x40000002: "P210",
}

func (f BufferFormat) String() string {
	if n, ok := formatNames[f]; ok {
		return n
	}
	return fmt.Sprintf("format 0x%x", uint32(f))
}

// Capability queries (NV_ENC_CAPS, enum order).
const (
	capsNumMaxBFrames     = 0
	capsWidthMax          = 16
	capsHeightMax         = 17
	capsAsyncEncode       = 30
	capsNumEncoderEngines = 49
)

// deviceTypeCUDA is NV_ENC_DEVICE_TYPE_CUDA: the session's device is a
// CUcontext.
const deviceTypeCUDA = 1

// functionList is NV_ENCODE_API_FUNCTION_LIST (struct version 2): the
// entry points NvEncodeAPICreateInstance fills in, in the documented order.
type functionList struct {
	version  uint32
	reserved uint32

	openEncodeSession, getEncodeGUIDCount, getEncodeProfileGUIDCount, getEncodeProfileGUIDs              uintptr
	getEncodeGUIDs, getInputFormatCount, getInputFormats, getEncodeCaps                                  uintptr
	getEncodePresetCount, getEncodePresetGUIDs, getEncodePresetConfig, initializeEncoder                 uintptr
	createInputBuffer, destroyInputBuffer, createBitstreamBuffer, destroyBitstreamBuffer                 uintptr
	encodePicture, lockBitstream, unlockBitstream, lockInputBuffer, unlockInputBuffer                    uintptr
	getEncodeStats, getSequenceParams, registerAsyncEvent, unregisterAsyncEvent                          uintptr
	mapInputResource, unmapInputResource, destroyEncoder, invalidateRefFrames                            uintptr
	openEncodeSessionEx, registerResource, unregisterResource, reconfigureEncoder                        uintptr
	reserved1                                                                                            uintptr
	createMVBuffer, destroyMVBuffer, runMotionEstimationOnly, getLastErrorString                         uintptr
	setIOCudaStreams, getEncodePresetConfigEx, getSequenceParamEx, restoreEncoderState, lookaheadPicture uintptr

	reserved2 [275]uintptr
}

// openSessionParams is NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS (struct
// version 1).
type openSessionParams struct {
	version    uint32
	deviceType uint32
	device     uintptr // the CUcontext
	reserved   uintptr
	apiVersion uint32
	reserved1  [253]uint32
	reserved2  [64]uintptr
}

// capsParam is NV_ENC_CAPS_PARAM (struct version 1).
type capsParam struct {
	version     uint32
	capsToQuery uint32
	reserved    [62]uint32
}

// call invokes an NVENC entry point and returns its status. Pointer
// arguments must be written as uintptr(unsafe.Pointer(&x)) in the call
// itself: go:uintptrescapes then keeps x alive and in place (see
// backend/cuda's call).
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) Status {
	r, _, _ := purego.SyscallN(fn, args...)
	return Status(uint32(r))
}

// callPtr invokes an entry point that returns a pointer.
func callPtr(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// goString copies a NUL-terminated C string (at most 4 KiB).
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	base := *(*unsafe.Pointer)(unsafe.Pointer(&p)) // C memory: no arithmetic on nil
	var b []byte
	for i := 0; i < 4096; i++ {
		c := *(*byte)(unsafe.Add(base, i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}
