package pipeline

import "testing"

func TestResolutionTable(t *testing.T) {
	s, err := Resolution("480p", "16:9")
	if err != nil || s != (Size{832, 480}) {
		t.Fatalf("480p 16:9 = %v, %v", s, err)
	}
	lat, err := LatentShape(81, s)
	if err != nil || lat != [4]int{16, 21, 60, 104} {
		t.Fatalf("latent for 81 frames at 832x480 = %v, %v; want [16 21 60 104]", lat, err)
	}
	// 480p x 81 frames is the reference's L = 32760 tokens.
	if l := lat[1] * (lat[2] / 2) * (lat[3] / 2); l != 32760 {
		t.Fatalf("tokens = %d, want 32760", l)
	}
	s, _ = Resolution("720p", "16:9")
	lat, _ = LatentShape(81, s)
	if l := lat[1] * (lat[2] / 2) * (lat[3] / 2); l != 75600 {
		t.Fatalf("720p tokens = %d, want 75600", l)
	}
	for _, bad := range [][2]string{{"1080p", "16:9"}, {"480p", "2:1"}} {
		if _, err := Resolution(bad[0], bad[1]); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
	for _, f := range []int{0, 2, 80, 82} {
		if _, err := LatentShape(f, Size{832, 480}); err == nil {
			t.Errorf("frames %d: want an error", f)
		}
	}
}
