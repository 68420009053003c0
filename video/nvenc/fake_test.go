package nvenc

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// fakeDriver stands in for libnvidia-encode: C-callable Go functions
// (purego.NewCallback) that check what the probe passes (version words,
// device, by-value GUIDs, handles) the way the driver does and answer
// from the fields below.
type fakeDriver struct {
	max                            uint32 // NvEncodeAPIGetMaxSupportedVersion's answer
	wantFL, wantOpen, wantAPI      uint32 // version words the driver accepts
	wantCaps                       uint32
	ctx                            uintptr // the CUcontext the session must name
	openStatus                     Status
	enc                            uintptr // the handle the open writes (also when it fails)
	lastError                      []byte  // NUL-terminated
	codecs                         []GUID
	formats                        []BufferFormat
	caps                           map[uint32]int32
	destroyed                      []uintptr
	problems                       []string
	guidCountCalls, capsQueryCalls int
}

var (
	fake      *fakeDriver
	fakeOnce  sync.Once
	fakeEntry *entry
	fakeMu    sync.Mutex // one fake at a time
)

// at turns an address the probe passed back into a pointer (the memory
// is the probe's, kept alive by go:uintptrescapes for the call).
func at(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

func (f *fakeDriver) problem(format string, args ...any) {
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

func guidOf(lo, hi uintptr) GUID {
	w := [2]uint64{uint64(lo), uint64(hi)}
	return *(*GUID)(unsafe.Pointer(&w))
}

func (f *fakeDriver) session(enc uintptr) bool {
	if enc != f.enc || enc == 0 {
		f.problem("call on encoder %#x, the session is %#x", enc, f.enc)
		return false
	}
	return true
}

func makeFakeEntry() {
	cb := purego.NewCallback
	list := map[string]uintptr{}
	list["getEncodeGUIDCount"] = cb(func(enc, pn uintptr) uintptr {
		fake.guidCountCalls++
		if !fake.session(enc) {
			return 3
		}
		*(*uint32)(at(pn)) = uint32(len(fake.codecs))
		return 0
	})
	list["getEncodeGUIDs"] = cb(func(enc, arr, size, pn uintptr) uintptr {
		if !fake.session(enc) {
			return 3
		}
		n := min(int(size), len(fake.codecs))
		copy(unsafe.Slice((*GUID)(at(arr)), n), fake.codecs)
		*(*uint32)(at(pn)) = uint32(n)
		return 0
	})
	list["getInputFormatCount"] = cb(func(enc, lo, hi, pn uintptr) uintptr {
		if !fake.session(enc) {
			return 3
		}
		if g := guidOf(lo, hi); g != CodecH264 {
			fake.problem("input formats asked for GUID %s", g)
			return uintptr(StatusInvalidParam)
		}
		*(*uint32)(at(pn)) = uint32(len(fake.formats))
		return 0
	})
	list["getInputFormats"] = cb(func(enc, lo, hi, arr, size, pn uintptr) uintptr {
		if !fake.session(enc) {
			return 3
		}
		if g := guidOf(lo, hi); g != CodecH264 {
			fake.problem("input formats asked for GUID %s", g)
			return uintptr(StatusInvalidParam)
		}
		n := min(int(size), len(fake.formats))
		copy(unsafe.Slice((*BufferFormat)(at(arr)), n), fake.formats)
		*(*uint32)(at(pn)) = uint32(n)
		return 0
	})
	list["getEncodeCaps"] = cb(func(enc, lo, hi, param, pv uintptr) uintptr {
		fake.capsQueryCalls++
		if !fake.session(enc) {
			return 3
		}
		p := (*capsParam)(at(param))
		if p.version != fake.wantCaps {
			fake.problem("caps param version %#x, want %#x", p.version, fake.wantCaps)
			return uintptr(StatusInvalidVersion)
		}
		if g := guidOf(lo, hi); g != CodecH264 {
			fake.problem("caps asked for GUID %s", g)
			return uintptr(StatusInvalidParam)
		}
		v, ok := fake.caps[p.capsToQuery]
		if !ok {
			return 12 // NV_ENC_ERR_UNSUPPORTED_PARAM
		}
		*(*int32)(at(pv)) = v
		return 0
	})
	list["destroyEncoder"] = cb(func(enc uintptr) uintptr {
		fake.destroyed = append(fake.destroyed, enc)
		return 0
	})
	list["getLastErrorString"] = cb(func(enc uintptr) uintptr {
		if len(fake.lastError) == 0 {
			return 0
		}
		return uintptr(unsafe.Pointer(&fake.lastError[0]))
	})
	list["openEncodeSessionEx"] = cb(func(params, pEnc uintptr) uintptr {
		sp := (*openSessionParams)(at(params))
		switch {
		case sp.version != fake.wantOpen:
			fake.problem("open params version %#x, want %#x", sp.version, fake.wantOpen)
			return uintptr(StatusInvalidVersion)
		case sp.apiVersion != fake.wantAPI:
			fake.problem("apiVersion %#x, want %#x", sp.apiVersion, fake.wantAPI)
			return uintptr(StatusInvalidVersion)
		case sp.deviceType != 1 || sp.device != fake.ctx:
			fake.problem("device type %d device %#x, want CUDA (1) %#x", sp.deviceType, sp.device, fake.ctx)
			return uintptr(StatusInvalidParam)
		}
		*(*uintptr)(at(pEnc)) = fake.enc
		return uintptr(fake.openStatus)
	})
	getMax := cb(func(p uintptr) uintptr {
		*(*uint32)(at(p)) = fake.max
		return 0
	})
	create := cb(func(p uintptr) uintptr {
		fl := (*functionList)(at(p))
		if fl.version != fake.wantFL {
			fake.problem("function list version %#x, want %#x", fl.version, fake.wantFL)
			return uintptr(StatusInvalidVersion)
		}
		v := reflect.ValueOf(fl).Elem()
		for name, addr := range list {
			f := v.FieldByName(name)
			*(*uintptr)(unsafe.Pointer(f.UnsafeAddr())) = addr
		}
		return 0
	})
	fakeEntry = &entry{lib: "fake", getMaxVersion: getMax, createInstance: create}
}

// withFake runs the probe against a fake driver set up as f.
func withFake(t *testing.T, f *fakeDriver) (*Info, error) {
	t.Helper()
	fakeMu.Lock()
	defer fakeMu.Unlock()
	fakeOnce.Do(makeFakeEntry)
	fake = f
	info, err := fakeEntry.probe(f.ctx, Version{})
	for _, p := range f.problems {
		t.Errorf("the fake driver saw: %s", p)
	}
	return info, err
}

func newFake(max uint32, fl, open, api uint32) *fakeDriver {
	return &fakeDriver{
		max: max, wantFL: fl, wantOpen: open, wantAPI: api, wantCaps: open, ctx: 0xC0FFEE, enc: 0xE7C,
		codecs:  []GUID{CodecH264, CodecHEVC, CodecAV1},
		formats: []BufferFormat{FormatNV12, 0x10, FormatARGB, FormatABGR},
		// NV_ENC_CAPS by enum position: NUM_MAX_BFRAMES 0, WIDTH_MAX 16,
		// HEIGHT_MAX 17, ASYNC_ENCODE_SUPPORT 30, NUM_ENCODER_ENGINES 49.
		caps: map[uint32]int32{16: 4096, 17: 2304, 0: 4, 30: 0, 49: 2},
	}
}

// TestProbeFakeDriver runs the whole probe against the fake: version words
// for the negotiated API, the CUDA device, the by-value GUIDs, the caps,
// and one destroy of the session.
func TestProbeFakeDriver(t *testing.T) {
	for _, c := range []struct {
		max                 uint32
		fl, open, api       uint32
		wantDriver, wantAPI Version
	}{
		{0xD0, 0x7002000D, 0x7001000D, 0x0000000D, Version{13, 0}, Version{13, 0}},
		{0xD1, 0x7002000D, 0x7001000D, 0x0000000D, Version{13, 1}, Version{13, 0}},
		{0xC2, 0x7202000C, 0x7201000C, 0x0200000C, Version{12, 2}, Version{12, 2}},
	} {
		f := newFake(c.max, c.fl, c.open, c.api)
		info, err := withFake(t, f)
		if err != nil {
			t.Fatalf("driver %#x: %v", c.max, err)
		}
		want := &Info{Library: "fake", DriverMax: c.wantDriver, API: c.wantAPI,
			Codecs: []GUID{CodecH264, CodecHEVC, CodecAV1},
			H264: &Caps{InputFormats: []BufferFormat{FormatNV12, 0x10, FormatARGB, FormatABGR},
				MaxWidth: 4096, MaxHeight: 2304, MaxBFrames: 4, Engines: 2}}
		if !reflect.DeepEqual(info, want) {
			t.Errorf("driver %#x: probe gave\n%+v %+v\nwant\n%+v %+v", c.max, info, info.H264, want, want.H264)
		}
		if len(f.destroyed) != 1 || f.destroyed[0] != f.enc {
			t.Errorf("driver %#x: destroyed %#x, want the session %#x once", c.max, f.destroyed, f.enc)
		}
		if s := Describe(info, err); s != "H.264, HEVC, AV1 (max 4096x2304)" {
			t.Errorf("Describe = %q", s)
		}
	}
}

// TestProbeFakeNoEngine: a driver that refuses the session gives a
// StatusError with its status and last-error text, the session handle it
// wrote is destroyed, nothing else is asked, and doctor's line names it.
func TestProbeFakeNoEngine(t *testing.T) {
	f := newFake(0xD0, 0x7002000D, 0x7001000D, 0x0000000D)
	f.openStatus = StatusUnsupportedDevice
	f.lastError = []byte("This device does not support NVENC\x00")
	info, err := withFake(t, f)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusUnsupportedDevice || se.Call != "nvEncOpenEncodeSessionEx" ||
		se.Detail != "This device does not support NVENC" {
		t.Fatalf("got %v, want NV_ENC_ERR_UNSUPPORTED_DEVICE from nvEncOpenEncodeSessionEx with the driver's text", err)
	}
	if info == nil || info.API != (Version{13, 0}) {
		t.Errorf("info %+v, want the versions filled in", info)
	}
	if len(f.destroyed) != 1 || f.destroyed[0] != f.enc {
		t.Errorf("destroyed %#x, want the failed session %#x once", f.destroyed, f.enc)
	}
	if f.guidCountCalls+f.capsQueryCalls != 0 {
		t.Errorf("%d queries on a session that did not open", f.guidCountCalls+f.capsQueryCalls)
	}
	line := Describe(info, err)
	for _, want := range []string{"not available — ", "NV_ENC_ERR_UNSUPPORTED_DEVICE (2)", "nvEncOpenEncodeSessionEx", "This device does not support NVENC"} {
		if !strings.Contains(line, want) {
			t.Errorf("Describe = %q, lacks %q", line, want)
		}
	}

	// No handle written: nothing to destroy.
	f = newFake(0xD0, 0x7002000D, 0x7001000D, 0x0000000D)
	f.openStatus, f.enc = StatusNoEncodeDevice, 0
	_, err = withFake(t, f)
	if !errors.As(err, &se) || se.Status != StatusNoEncodeDevice {
		t.Errorf("got %v, want NV_ENC_ERR_NO_ENCODE_DEVICE", err)
	}
	if len(f.destroyed) != 0 {
		t.Errorf("destroyed %#x after an open that returned no handle", f.destroyed)
	}
}

// TestProbeFakeOldDriver: a driver older than the known layouts is refused
// before any struct is handed over.
func TestProbeFakeOldDriver(t *testing.T) {
	f := newFake(0xA0, 0, 0, 0)
	info, err := withFake(t, f)
	if err == nil || !strings.Contains(err.Error(), "10.0") || info == nil || info.DriverMax != (Version{10, 0}) {
		t.Errorf("got %+v, %v; want an error naming the driver's 10.0", info, err)
	}
}

// TestProbeFakeCapsFailure: a failing caps query is an error naming the
// codec and the query, and the open session is still destroyed.
func TestProbeFakeCapsFailure(t *testing.T) {
	f := newFake(0xD0, 0x7002000D, 0x7001000D, 0x0000000D)
	delete(f.caps, 49)
	_, err := withFake(t, f)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 12 || !strings.Contains(se.Call, "H.264, caps 49") {
		t.Errorf("got %v, want NV_ENC_ERR_UNSUPPORTED_PARAM from the H.264 caps 49 query", err)
	}
	if len(f.destroyed) != 1 {
		t.Errorf("destroyed %#x, want the session once", f.destroyed)
	}
}

// TestWithTimeout: a driver call that never returns ends the wait with an
// error naming the timeout, and a panic comes back as an error.
func TestWithTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	_, err := withTimeout(50*time.Millisecond, func() (*Info, error) { <-block; return nil, nil })
	if err == nil || !strings.Contains(err.Error(), "did not answer within 50ms") || time.Since(start) > 5*time.Second {
		t.Errorf("blocked probe: %v after %v", err, time.Since(start))
	}
	_, err = withTimeout(time.Minute, func() (*Info, error) { panic("bad pointer") })
	if err == nil || !strings.Contains(err.Error(), "bad pointer") {
		t.Errorf("panicking probe: %v", err)
	}
	want := &Info{Library: "x"}
	if got, err := withTimeout(time.Minute, func() (*Info, error) { return want, nil }); got != want || err != nil {
		t.Errorf("got %v, %v", got, err)
	}
}
