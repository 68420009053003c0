package nvenc

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
)

// TestFunctionListLayout: NV_ENCODE_API_FUNCTION_LIST is two uint32 words,
// then 42 entry points and one reserved pointer in the documented order,
// then 275 reserved pointers: 8 + 318*8 = 2552 bytes on a 64-bit machine,
// the k-th pointer at 8+8k. The driver fills the slots by position, so a
// missing or swapped field calls the wrong function.
func TestFunctionListLayout(t *testing.T) {
	documented := []string{
		"nvEncOpenEncodeSession", "nvEncGetEncodeGUIDCount", "nvEncGetEncodeProfileGUIDCount",
		"nvEncGetEncodeProfileGUIDs", "nvEncGetEncodeGUIDs", "nvEncGetInputFormatCount",
		"nvEncGetInputFormats", "nvEncGetEncodeCaps", "nvEncGetEncodePresetCount",
		"nvEncGetEncodePresetGUIDs", "nvEncGetEncodePresetConfig", "nvEncInitializeEncoder",
		"nvEncCreateInputBuffer", "nvEncDestroyInputBuffer", "nvEncCreateBitstreamBuffer",
		"nvEncDestroyBitstreamBuffer", "nvEncEncodePicture", "nvEncLockBitstream",
		"nvEncUnlockBitstream", "nvEncLockInputBuffer", "nvEncUnlockInputBuffer",
		"nvEncGetEncodeStats", "nvEncGetSequenceParams", "nvEncRegisterAsyncEvent",
		"nvEncUnregisterAsyncEvent", "nvEncMapInputResource", "nvEncUnmapInputResource",
		"nvEncDestroyEncoder", "nvEncInvalidateRefFrames", "nvEncOpenEncodeSessionEx",
		"nvEncRegisterResource", "nvEncUnregisterResource", "nvEncReconfigureEncoder",
		"reserved1", "nvEncCreateMVBuffer", "nvEncDestroyMVBuffer",
		"nvEncRunMotionEstimationOnly", "nvEncGetLastErrorString", "nvEncSetIOCudaStreams",
		"nvEncGetEncodePresetConfigEx", "nvEncGetSequenceParamEx", "nvEncRestoreEncoderState",
		"nvEncLookaheadPicture",
	}
	if len(documented) != 43 {
		t.Fatalf("test list has %d slots, want 42 functions + reserved1", len(documented))
	}
	var fl functionList
	if got := unsafe.Sizeof(fl); got != 2552 {
		t.Errorf("sizeof(functionList) = %d, want 2552", got)
	}
	ty := reflect.TypeOf(fl)
	if ty.NumField() != 2+len(documented)+1 {
		t.Fatalf("functionList has %d fields, want %d", ty.NumField(), 2+len(documented)+1)
	}
	for i, want := range []struct {
		name string
		off  uintptr
	}{{"version", 0}, {"reserved", 4}} {
		if f := ty.Field(i); f.Name != want.name || f.Offset != want.off {
			t.Errorf("field %d: %s at %d, want %s at %d", i, f.Name, f.Offset, want.name, want.off)
		}
	}
	for k, c := range documented {
		goName := strings.TrimPrefix(c, "nvEnc")
		goName = strings.ToLower(goName[:1]) + goName[1:]
		f := ty.Field(2 + k)
		if f.Name != goName || f.Offset != uintptr(8+8*k) || f.Type.Size() != 8 {
			t.Errorf("slot %d (%s): field %s at %d size %d, want %s at %d size 8", k, c, f.Name, f.Offset, f.Type.Size(), goName, 8+8*k)
		}
	}
	last := ty.Field(ty.NumField() - 1)
	if last.Name != "reserved2" || last.Offset != 352 || last.Type.Len() != 275 {
		t.Errorf("last field %s at %d, %d long; want reserved2 at 352, 275 pointers", last.Name, last.Offset, last.Type.Len())
	}
}

// TestParamLayouts: NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS is version(4)
// deviceType(4) device(8) reserved(8) apiVersion(4) reserved1[253](1012),
// which ends at 1040 (8-aligned already), then reserved2[64] pointers:
// 1552 bytes. NV_ENC_CAPS_PARAM is version, capsToQuery, reserved[62]:
// 256 bytes. A GUID is 16 bytes.
func TestParamLayouts(t *testing.T) {
	var sp openSessionParams
	var cp capsParam
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"sizeof(openSessionParams)", unsafe.Sizeof(sp), 1552},
		{"openSessionParams.version", unsafe.Offsetof(sp.version), 0},
		{"openSessionParams.deviceType", unsafe.Offsetof(sp.deviceType), 4},
		{"openSessionParams.device", unsafe.Offsetof(sp.device), 8},
		{"openSessionParams.reserved", unsafe.Offsetof(sp.reserved), 16},
		{"openSessionParams.apiVersion", unsafe.Offsetof(sp.apiVersion), 24},
		{"openSessionParams.reserved1", unsafe.Offsetof(sp.reserved1), 28},
		{"openSessionParams.reserved2", unsafe.Offsetof(sp.reserved2), 1040},
		{"sizeof(capsParam)", unsafe.Sizeof(cp), 256},
		{"capsParam.capsToQuery", unsafe.Offsetof(cp.capsToQuery), 4},
		{"capsParam.reserved", unsafe.Offsetof(cp.reserved), 8},
		{"sizeof(GUID)", unsafe.Sizeof(GUID{}), 16},
		{"sizeof(BufferFormat)", unsafe.Sizeof(BufferFormat(0)), 4},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
}

// TestVersionWords: NVENCAPI_VERSION = major | minor<<24 and
// NVENCAPI_STRUCT_VERSION(n) = NVENCAPI_VERSION | n<<16 | 7<<28, worked out
// by hand for the versions a driver may ask for.
func TestVersionWords(t *testing.T) {
	for _, c := range []struct {
		v               Version
		api, ver1, ver2 uint32
		maxWord         uint32 // NvEncodeAPIGetMaxSupportedVersion's form
		wantStr         string
	}{
		{Version{13, 0}, 0x0000000D, 0x7001000D, 0x7002000D, 0xD0, "13.0"},
		{Version{12, 2}, 0x0200000C, 0x7201000C, 0x7202000C, 0xC2, "12.2"},
		{Version{11, 1}, 0x0100000B, 0x7101000B, 0x7102000B, 0xB1, "11.1"},
	} {
		if got := c.v.word(); got != c.api {
			t.Errorf("%s: API word %#x, want %#x", c.v, got, c.api)
		}
		if got := c.v.structVersion(1); got != c.ver1 {
			t.Errorf("%s: struct version 1 word %#x, want %#x", c.v, got, c.ver1)
		}
		if got := c.v.structVersion(2); got != c.ver2 {
			t.Errorf("%s: struct version 2 word %#x, want %#x", c.v, got, c.ver2)
		}
		if got := decodeMaxVersion(c.maxWord); got != c.v {
			t.Errorf("decodeMaxVersion(%#x) = %s, want %s", c.maxWord, got, c.v)
		}
		if c.v.String() != c.wantStr {
			t.Errorf("String() = %q, want %q", c.v.String(), c.wantStr)
		}
	}
}

// TestNegotiate: speak the driver's version when it is older than ours,
// ours when it is newer, and refuse one older than the known layouts.
func TestNegotiate(t *testing.T) {
	for _, c := range []struct {
		driver, want Version
		fails        bool
	}{
		{Version{13, 0}, Version{13, 0}, false},
		{Version{13, 1}, Version{13, 0}, false},
		{Version{14, 0}, Version{13, 0}, false},
		{Version{12, 2}, Version{12, 2}, false},
		{Version{12, 0}, Version{12, 0}, false},
		{Version{11, 1}, Version{11, 1}, false},
		{Version{11, 0}, Version{}, true},
		{Version{9, 1}, Version{}, true},
	} {
		got, err := negotiate(c.driver)
		if c.fails {
			if err == nil || !strings.Contains(err.Error(), c.driver.String()) {
				t.Errorf("driver %s: got %s, %v; want an error naming %s", c.driver, got, err, c.driver)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("driver %s: got %s, %v; want %s", c.driver, got, err, c.want)
		}
	}
}

// TestGUID: a GUID passed by value travels as two little-endian 8-byte
// words: Data1, Data2, Data3 in the first, Data4's bytes in the second.
func TestGUID(t *testing.T) {
	lo, hi := CodecH264.words()
	if uint64(lo) != 0x4ca44e636bc82762 || uint64(hi) != 0xbff621f3501e85aa {
		t.Errorf("H.264 GUID words %#x %#x, want 0x4ca44e636bc82762 0xbff621f3501e85aa", lo, hi)
	}
	for _, c := range []struct {
		g         GUID
		str, name string
	}{
		{CodecH264, "6BC82762-4E63-4CA4-AA85-1E50F321F6BF", "H.264"},
		{CodecHEVC, "790CDC88-4522-4D7B-9425-BDA9975F7603", "HEVC"},
		{CodecAV1, "0A352289-0AA7-4759-862D-5D15CD16D254", "AV1"},
		{GUID{1, 2, 3, [8]byte{4, 5, 6, 7, 8, 9, 10, 11}}, "00000001-0002-0003-0405-060708090A0B", "codec 00000001-0002-0003-0405-060708090A0B"},
	} {
		if c.g.String() != c.str || CodecName(c.g) != c.name {
			t.Errorf("GUID %s named %q, want %s named %q", c.g, CodecName(c.g), c.str, c.name)
		}
	}
}

// TestStatus: the names follow NVENCSTATUS's enum order.
func TestStatus(t *testing.T) {
	if len(statusText) != 27 {
		t.Errorf("%d statuses named, want 27 (NV_ENC_SUCCESS .. NV_ENC_ERR_NEED_MORE_OUTPUT)", len(statusText))
	}
	for s, want := range map[Status]string{
		0: "NV_ENC_SUCCESS", 1: "NV_ENC_ERR_NO_ENCODE_DEVICE", 2: "NV_ENC_ERR_UNSUPPORTED_DEVICE",
		8: "NV_ENC_ERR_INVALID_PARAM", 10: "NV_ENC_ERR_OUT_OF_MEMORY", 15: "NV_ENC_ERR_INVALID_VERSION",
		20: "NV_ENC_ERR_GENERIC", 26: "NV_ENC_ERR_NEED_MORE_OUTPUT", 99: "NVENCSTATUS 99",
	} {
		if s.Name() != want {
			t.Errorf("status %d named %q, want %q", uint32(s), s.Name(), want)
		}
	}
	if s := StatusUnsupportedDevice.String(); !strings.HasPrefix(s, "NV_ENC_ERR_UNSUPPORTED_DEVICE (2): ") {
		t.Errorf("String() = %q", s)
	}
	if StatusNoEncodeDevice.Name() != "NV_ENC_ERR_NO_ENCODE_DEVICE" || StatusInvalidVersion.Name() != "NV_ENC_ERR_INVALID_VERSION" ||
		StatusInvalidParam.Name() != "NV_ENC_ERR_INVALID_PARAM" {
		t.Error("a Status constant does not match its name")
	}
}

// TestDescribe: doctor's line for each kind of failure is one line that
// says "not available" and why, naming the library or the driver's status.
func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		err  error
		want []string
	}{
		{&cuda.MissingLibraryError{Lib: "libnvidia-encode", Searched: []string{"/a", "/b"}, Install: "the NVIDIA driver"},
			[]string{"libnvidia-encode not found", "searched 2 folders", "install the NVIDIA driver"}},
		{&cuda.MissingLibraryError{Lib: "libnvidia-encode", Failures: []string{"/a/libnvidia-encode.so.1: wrong ELF class"}},
			[]string{"libnvidia-encode found but cannot be opened: /a/libnvidia-encode.so.1: wrong ELF class"}},
		{&cuda.MissingLibraryError{Lib: "libcuda", Searched: []string{"/a"}, Install: "the driver"},
			[]string{"libcuda not found"}},
		{cuda.ErrNoGPU, []string{"not available — no GPU (the driver sees none)"}},
		{&StatusError{Call: "nvEncOpenEncodeSessionEx", Status: StatusNoEncodeDevice},
			[]string{"NV_ENC_ERR_NO_ENCODE_DEVICE (1): no encode-capable device", "from nvEncOpenEncodeSessionEx"}},
		{fmt.Errorf("nvenc: first\nsecond"), []string{"first; second"}},
	} {
		got := Describe(nil, c.err)
		if !strings.HasPrefix(got, "not available — ") || strings.Contains(got, "\n") {
			t.Errorf("Describe(%v) = %q, want one line starting %q", c.err, got, "not available — ")
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("Describe(%v) = %q, lacks %q", c.err, got, w)
			}
		}
	}
	if got := (&Info{}).Summary(); !strings.Contains(got, "no codec") {
		t.Errorf("Summary of an empty session = %q", got)
	}
}

// TestCapsIndices: the NV_ENC_CAPS values used are positions in the
// documented enum (no explicit values), listed here up to the last one used.
func TestCapsIndices(t *testing.T) {
	documented := strings.Fields(`NUM_MAX_BFRAMES SUPPORTED_RATECONTROL_MODES SUPPORT_FIELD_ENCODING
		SUPPORT_MONOCHROME SUPPORT_FMO SUPPORT_QPELMV SUPPORT_BDIRECT_MODE SUPPORT_CABAC
		SUPPORT_ADAPTIVE_TRANSFORM SUPPORT_STEREO_MVC NUM_MAX_TEMPORAL_LAYERS
		SUPPORT_HIERARCHICAL_PFRAMES SUPPORT_HIERARCHICAL_BFRAMES LEVEL_MAX LEVEL_MIN
		SEPARATE_COLOUR_PLANE WIDTH_MAX HEIGHT_MAX SUPPORT_TEMPORAL_SVC SUPPORT_DYN_RES_CHANGE
		SUPPORT_DYN_BITRATE_CHANGE SUPPORT_DYN_FORCE_CONSTQP SUPPORT_DYN_RCMODE_CHANGE
		SUPPORT_SUBFRAME_READBACK SUPPORT_CONSTRAINED_ENCODING SUPPORT_INTRA_REFRESH
		SUPPORT_CUSTOM_VBV_BUF_SIZE SUPPORT_DYNAMIC_SLICE_MODE SUPPORT_REF_PIC_INVALIDATION
		PREPROC_SUPPORT ASYNC_ENCODE_SUPPORT MB_NUM_MAX MB_PER_SEC_MAX SUPPORT_YUV444_ENCODE
		SUPPORT_LOSSLESS_ENCODE SUPPORT_SAO SUPPORT_MEONLY_MODE SUPPORT_LOOKAHEAD
		SUPPORT_TEMPORAL_AQ SUPPORT_10BIT_ENCODE NUM_MAX_LTR_FRAMES SUPPORT_WEIGHTED_PREDICTION
		DYNAMIC_QUERY_ENCODER_CAPACITY SUPPORT_BFRAME_REF_MODE SUPPORT_EMPHASIS_LEVEL_MAP
		WIDTH_MIN HEIGHT_MIN SUPPORT_MULTIPLE_REF_FRAMES SUPPORT_ALPHA_LAYER_ENCODING
		NUM_ENCODER_ENGINES`)
	pos := map[string]int{}
	for i, n := range documented {
		pos[n] = i
	}
	for name, got := range map[string]int{
		"NUM_MAX_BFRAMES": capsNumMaxBFrames, "WIDTH_MAX": capsWidthMax, "HEIGHT_MAX": capsHeightMax,
		"ASYNC_ENCODE_SUPPORT": capsAsyncEncode, "NUM_ENCODER_ENGINES": capsNumEncoderEngines,
	} {
		if got != pos[name] {
			t.Errorf("NV_ENC_CAPS_%s = %d, want %d", name, got, pos[name])
		}
	}
}
