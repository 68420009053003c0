package video

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// The zero Encoding is the default; fields turn into ffmpeg's x264 options;
// bad values are refused by name.
func TestEncodingArgs(t *testing.T) {
	def := strings.Join(Encoding{}.x264Args(), " ")
	if want := "-vcodec libx264 -pix_fmt yuv420p -preset " + DefaultPreset + " -crf 25"; !strings.HasPrefix(def, want) {
		t.Errorf("default args %q, want prefix %q", def, want)
	}
	if DefaultTune == "none" && strings.Contains(def, "-tune") {
		t.Errorf("default args %q pass a tune", def)
	}
	got := Encoding{Preset: "ultrafast", CRF: 18, Tune: "zerolatency", Threads: 4, Params: "rc-lookahead=5"}.x264Args()
	for _, pair := range [][2]string{{"-preset", "ultrafast"}, {"-crf", "18"}, {"-tune", "zerolatency"}, {"-threads", "4"}, {"-x264-params", "rc-lookahead=5"}} {
		i := slices.Index(got, pair[0])
		if i < 0 || i+1 >= len(got) || got[i+1] != pair[1] {
			t.Errorf("args %q: want %s %s", got, pair[0], pair[1])
		}
	}
	for _, bad := range []Encoding{{Preset: "warp"}, {CRF: 52}, {CRF: -1}, {Tune: "loud"}, {Threads: -2}, {Params: "a=1 b=2"}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (Encoding{Preset: "medium", CRF: 1, Tune: "film"}).Validate(); err != nil {
		t.Error(err)
	}
}

// The patterns are deterministic, sized, moving (consecutive frames differ)
// and not flat; PSNR is +Inf for equal clips and finite otherwise.
func TestPatternsAndPSNR(t *testing.T) {
	for _, kind := range Patterns {
		a, err := Pattern(kind, 48, 32, 3)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Pattern(kind, 48, 32, 3)
		if err := a.Validate(); err != nil {
			t.Fatal(kind, err)
		}
		p, err := PSNR(a.Frames, b.Frames)
		if err != nil || !math.IsInf(p, 1) {
			t.Errorf("%s: PSNR of two makes %v (%v), want +Inf: not deterministic", kind, p, err)
		}
		if q, _ := PSNR(a.Frames[:1], a.Frames[1:2]); math.IsInf(q, 1) || q > 60 {
			t.Errorf("%s: frames 0 and 1 are (nearly) equal (PSNR %.1f dB): the pattern does not move", kind, q)
		}
	}
	if _, err := Pattern("plaid", 8, 8, 1); err == nil {
		t.Error("unknown pattern accepted")
	}
	if _, err := PSNR([][]byte{{1, 2}}, [][]byte{{1}}); err == nil {
		t.Error("PSNR of mismatched frames accepted")
	}
	if p, _ := PSNR([][]byte{{0, 0}}, [][]byte{{255, 255}}); p != 0 {
		t.Errorf("PSNR of full-scale error %v, want 0 dB", p)
	}
}

// MeasureEncode reports a file that decodes close to the clip (the pan at
// CRF 25 is well above 30 dB) and times that add up.
func TestMeasureEncode(t *testing.T) {
	needFFmpeg(t)
	c, err := Pattern("pan", 128, 96, 9)
	if err != nil {
		t.Fatal(err)
	}
	st, err := MeasureEncode(c, Encoding{Preset: "ultrafast"}, t.TempDir(), 4, 5*time.Millisecond, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	if st.PSNR < 30 || math.IsInf(st.PSNR, 1) || st.Bytes <= 0 || st.Alone <= 0 || st.Tail <= 0 || st.CPU <= 0 {
		t.Errorf("implausible measurement %+v", st)
	}
}
