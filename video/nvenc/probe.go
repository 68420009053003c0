package nvenc

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
)

// libInstall says where libnvidia-encode (nvEncodeAPI64.dll on Windows)
// comes from.
func libInstall() string {
	if runtime.GOOS == "windows" {
		return "the NVIDIA driver (nvEncodeAPI64.dll in System32 comes with it)"
	}
	return "the NVIDIA driver (libnvidia-encode.so.1 comes with it; in a container, add video to NVIDIA_DRIVER_CAPABILITIES)"
}

// Info is what the driver's encoder reports for one GPU.
type Info struct {
	Library   string  // the libnvidia-encode file loaded
	DriverMax Version // the newest API version the driver supports
	API       Version // the version spoken (see negotiate)
	// Codecs lists the encode GUIDs the session offers, in the driver's order.
	Codecs []GUID
	// H264 holds H.264's input formats and limits; nil when H.264 is not
	// offered.
	H264 *Caps
}

// Caps are one codec's input formats and limits.
type Caps struct {
	InputFormats        []BufferFormat
	MaxWidth, MaxHeight int
	MaxBFrames          int
	// AsyncEncode is NV_ENC_CAPS_ASYNC_ENCODE_SUPPORT (completion events;
	// the driver offers them on Windows only).
	AsyncEncode bool
	Engines     int // NVENC engines on the GPU (NV_ENC_CAPS_NUM_ENCODER_ENGINES)
}

// entry is libnvidia-encode's two exported functions; everything else
// comes through the function list NvEncodeAPICreateInstance fills.
type entry struct {
	lib                           string
	getMaxVersion, createInstance uintptr
}

func loadEntry() (*entry, error) {
	lib, err := cuda.LoadLibrary("libnvidia-encode", "libnvidia-encode.so", "nvEncodeAPI64.dll", libInstall())
	if err != nil {
		return nil, err
	}
	e := &entry{lib: lib.Path}
	if e.getMaxVersion, err = lib.Symbol("NvEncodeAPIGetMaxSupportedVersion"); err != nil {
		return nil, err
	}
	if e.createInstance, err = lib.Symbol("NvEncodeAPICreateInstance"); err != nil {
		return nil, err
	}
	return e, nil
}

// Probe loads libnvidia-encode, opens an encode session on GPU ordinal's
// primary CUDA context, lists what it offers and closes it again. The
// error is a *StatusError with the driver's status when the driver has no
// encoder for the GPU, a *cuda.MissingLibraryError when the library is not
// installed, cuda.ErrNoGPU without a GPU. A driver that does not answer
// within timeout is reported as an error (its call is left behind; it
// ends with the process). Once a GPU's context is there and the driver
// has said its API version, Info is non-nil (with the versions) even when
// the error says it has no encoder.
func Probe(ordinal int, timeout time.Duration) (*Info, error) {
	return withTimeout(timeout, func() (*Info, error) { return probe(ordinal, Version{}) })
}

// withTimeout runs f on its own goroutine and gives up waiting after
// timeout; a panic in f comes back as an error.
func withTimeout(timeout time.Duration, f func() (*Info, error)) (*Info, error) {
	type result struct {
		info *Info
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.err = fmt.Errorf("nvenc: probe failed: %v", p)
			}
			ch <- r
		}()
		r.info, r.err = f()
	}()
	select {
	case r := <-ch:
		return r.info, r.err
	case <-time.After(timeout):
		return nil, fmt.Errorf("nvenc: the driver did not answer within %v", timeout)
	}
}

// probe is Probe's work; a non-zero api overrides the negotiated version
// (the GPU test tries older ones to tell a layout problem from a driver
// that has no encoder).
func probe(ordinal int, api Version) (*Info, error) {
	e, err := loadEntry()
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ctx, err := cuda.RetainPrimaryContext(ordinal)
	if err != nil {
		return nil, err
	}
	defer ctx.Release()
	if err := ctx.MakeCurrent(); err != nil {
		return nil, err
	}
	return e.probe(ctx.Handle, api)
}

// probe does the NVENC part of Probe on the CUcontext cuCtx.
func (e *entry) probe(cuCtx uintptr, api Version) (info *Info, err error) {
	info = &Info{Library: e.lib}
	var m uint32
	if s := call(e.getMaxVersion, uintptr(unsafe.Pointer(&m))); s != StatusSuccess {
		return nil, &StatusError{Call: "NvEncodeAPIGetMaxSupportedVersion", Status: s}
	}
	info.DriverMax = decodeMaxVersion(m)
	if info.API, err = negotiate(info.DriverMax); err != nil {
		return info, err
	}
	if api != (Version{}) {
		info.API = api
	}
	fl := &functionList{version: info.API.structVersion(2)}
	if s := call(e.createInstance, uintptr(unsafe.Pointer(fl))); s != StatusSuccess {
		return info, &StatusError{Call: "NvEncodeAPICreateInstance", Status: s}
	}
	for _, f := range []struct {
		name string
		p    uintptr
	}{
		{"nvEncOpenEncodeSessionEx", fl.openEncodeSessionEx}, {"nvEncDestroyEncoder", fl.destroyEncoder},
		{"nvEncGetEncodeGUIDCount", fl.getEncodeGUIDCount}, {"nvEncGetEncodeGUIDs", fl.getEncodeGUIDs},
		{"nvEncGetInputFormatCount", fl.getInputFormatCount}, {"nvEncGetInputFormats", fl.getInputFormats},
		{"nvEncGetEncodeCaps", fl.getEncodeCaps},
	} {
		if f.p == 0 {
			return info, fmt.Errorf("nvenc: NvEncodeAPICreateInstance (%s) left %s empty", e.lib, f.name)
		}
	}
	sp := &openSessionParams{version: info.API.structVersion(1), deviceType: deviceTypeCUDA,
		device: cuCtx, apiVersion: info.API.word()}
	var enc uintptr
	s := &session{fl: fl, api: info.API}
	if st := call(fl.openEncodeSessionEx, uintptr(unsafe.Pointer(sp)), uintptr(unsafe.Pointer(&enc))); st != StatusSuccess {
		// The API asks for a destroy after a failed open too.
		s.enc = enc
		err := s.fail("nvEncOpenEncodeSessionEx", st)
		if enc != 0 {
			call(fl.destroyEncoder, enc)
		}
		return info, err
	}
	s.enc = enc
	defer func() {
		if st := call(fl.destroyEncoder, enc); st != StatusSuccess && err == nil {
			err = &StatusError{Call: "nvEncDestroyEncoder", Status: st}
		}
	}()
	if info.Codecs, err = s.encodeGUIDs(); err != nil {
		return info, err
	}
	for _, g := range info.Codecs {
		if g == CodecH264 {
			if info.H264, err = s.caps(CodecH264); err != nil {
				return info, err
			}
		}
	}
	return info, nil
}

// session is an open encode session.
type session struct {
	fl  *functionList
	api Version
	enc uintptr
}

// fail is a StatusError with the driver's last error text.
func (s *session) fail(name string, st Status) *StatusError {
	e := &StatusError{Call: name, Status: st}
	if s.enc != 0 && s.fl.getLastErrorString != 0 {
		e.Detail = strings.TrimSpace(goString(callPtr(s.fl.getLastErrorString, s.enc)))
	}
	return e
}

// maxList bounds the lists the driver may return (it has a handful).
const maxList = 256

func (s *session) encodeGUIDs() ([]GUID, error) {
	var n uint32
	if st := call(s.fl.getEncodeGUIDCount, s.enc, uintptr(unsafe.Pointer(&n))); st != StatusSuccess {
		return nil, s.fail("nvEncGetEncodeGUIDCount", st)
	}
	if n == 0 {
		return nil, nil
	}
	if n > maxList {
		return nil, fmt.Errorf("nvenc: nvEncGetEncodeGUIDCount says %d codecs (expected at most %d)", n, maxList)
	}
	g := make([]GUID, n)
	var got uint32
	if st := call(s.fl.getEncodeGUIDs, s.enc, uintptr(unsafe.Pointer(&g[0])), uintptr(n), uintptr(unsafe.Pointer(&got))); st != StatusSuccess {
		return nil, s.fail("nvEncGetEncodeGUIDs", st)
	}
	if got > n {
		return nil, fmt.Errorf("nvenc: nvEncGetEncodeGUIDs wrote %d GUIDs into room for %d", got, n)
	}
	return g[:got], nil
}

func (s *session) inputFormats(codec GUID) ([]BufferFormat, error) {
	lo, hi := codec.words()
	var n uint32
	if st := call(s.fl.getInputFormatCount, s.enc, lo, hi, uintptr(unsafe.Pointer(&n))); st != StatusSuccess {
		return nil, s.fail("nvEncGetInputFormatCount", st)
	}
	if n == 0 {
		return nil, nil
	}
	if n > maxList {
		return nil, fmt.Errorf("nvenc: nvEncGetInputFormatCount says %d formats (expected at most %d)", n, maxList)
	}
	f := make([]BufferFormat, n)
	var got uint32
	if st := call(s.fl.getInputFormats, s.enc, lo, hi, uintptr(unsafe.Pointer(&f[0])), uintptr(n), uintptr(unsafe.Pointer(&got))); st != StatusSuccess {
		return nil, s.fail("nvEncGetInputFormats", st)
	}
	if got > n {
		return nil, fmt.Errorf("nvenc: nvEncGetInputFormats wrote %d formats into room for %d", got, n)
	}
	return f[:got], nil
}

// capability queries one NV_ENC_CAPS value of codec.
func (s *session) capability(codec GUID, which uint32) (int, error) {
	p := &capsParam{version: s.api.structVersion(1), capsToQuery: which}
	var v int32
	lo, hi := codec.words()
	if st := call(s.fl.getEncodeCaps, s.enc, lo, hi, uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&v))); st != StatusSuccess {
		e := s.fail("nvEncGetEncodeCaps", st)
		e.Call = fmt.Sprintf("nvEncGetEncodeCaps(%s, caps %d)", CodecName(codec), which)
		return 0, e
	}
	return int(v), nil
}

func (s *session) caps(codec GUID) (*Caps, error) {
	c := &Caps{}
	var err error
	if c.InputFormats, err = s.inputFormats(codec); err != nil {
		return nil, err
	}
	var async int
	for _, q := range []struct {
		which uint32
		dst   *int
	}{
		{capsWidthMax, &c.MaxWidth}, {capsHeightMax, &c.MaxHeight}, {capsNumMaxBFrames, &c.MaxBFrames},
		{capsAsyncEncode, &async}, {capsNumEncoderEngines, &c.Engines},
	} {
		if *q.dst, err = s.capability(codec, q.which); err != nil {
			return nil, err
		}
	}
	c.AsyncEncode = async != 0
	return c, nil
}

// Summary is the probe's one-line result for a session that opened:
// "H.264, HEVC, AV1 (max 4096x4096)", the limit being H.264's.
func (i *Info) Summary() string {
	if len(i.Codecs) == 0 {
		return "a session opens but the driver offers no codec"
	}
	names := make([]string, len(i.Codecs))
	for k, g := range i.Codecs {
		names[k] = CodecName(g)
	}
	s := strings.Join(names, ", ")
	if i.H264 != nil {
		s += fmt.Sprintf(" (max %dx%d)", i.H264.MaxWidth, i.H264.MaxHeight)
	}
	return s
}

// Describe is doctor's one-line NVENC report for Probe's result: the
// Summary, or "not available — " and why, naming the driver's status.
func Describe(info *Info, err error) string {
	if err == nil {
		return info.Summary()
	}
	var se *StatusError
	var me *cuda.MissingLibraryError
	var why string
	switch {
	case errors.As(err, &se):
		why = fmt.Sprintf("%s from %s", se.Status, se.Call)
		if se.Detail != "" {
			why += " (driver: " + se.Detail + ")"
		}
	case errors.As(err, &me) && len(me.Failures) > 0:
		why = fmt.Sprintf("%s found but cannot be opened: %s", me.Lib, strings.Join(me.Failures, "; "))
	case errors.As(err, &me):
		why = fmt.Sprintf("%s not found (searched %d folders and the system loader); install %s",
			me.Lib, len(me.Searched), me.Install)
	case errors.Is(err, cuda.ErrNoGPU):
		why = "no GPU (the driver sees none)"
	default:
		why = strings.ReplaceAll(strings.TrimPrefix(err.Error(), "nvenc: "), "\n", "; ")
	}
	return "not available — " + why
}
