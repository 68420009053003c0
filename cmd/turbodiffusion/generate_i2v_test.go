package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/internal/golden"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
)

// i2vFiles writes two tiny random I2V experts, a umT5 of their text width
// and a 40×24 PNG.
func i2vFiles(t *testing.T) (dir, high, low, enc, img string) {
	t.Helper()
	dir = t.TempDir()
	high, low = filepath.Join(dir, "high.safetensors"), filepath.Join(dir, "low.safetensors")
	enc, img = filepath.Join(dir, "enc.safetensors"), filepath.Join(dir, "in.png")
	if err := testmodels.WriteUMT5(enc, goldenVocab(t), 64, 7); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.WriteWanI2V(high, 64, 1); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.WriteWanI2V(low, 64, 2); err != nil {
		t.Fatal(err)
	}
	m := image.NewRGBA(image.Rect(0, 0, 40, 24))
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 7)
	}
	m.Set(0, 0, color.RGBA{255, 0, 0, 255})
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, m); err != nil {
		t.Fatal(err)
	}
	return
}

// TestGenerateI2VCLITinyModels runs `generate --image` on tiny experts and
// the golden VAE and checks a GIF of the requested size appears.
func TestGenerateI2VCLITinyModels(t *testing.T) {
	dir, high, low, enc, img := i2vFiles(t)
	out := filepath.Join(dir, "clip.gif")
	stdout, stderr, err := run(t, "generate", "--device", "cpu", "--prompt", "a fox", "--image", img, "--steps", "3",
		"--dit-high", high, "--dit-low", low, "--vae", golden.Path(t, "vae.safetensors"),
		"--text-encoder", enc, "--tokenizer", golden.Path(t, "tokenizer"), "--attention", "dense",
		"--resolution", "512", "--aspect", "1:1", "--frames", "1", "--no-cache", "-o", out)
	t.Log(stderr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout) != out {
		t.Errorf("stdout %q, want the written path %q", stdout, out)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("no GIF written: %v", err)
	}
	for _, want := range []string{"from " + img, "high-noise expert", "low-noise expert", "timings:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
}

func TestGenerateI2VBadInput(t *testing.T) {
	dir, high, low, enc, img := i2vFiles(t)
	common := []string{"--device", "cpu", "--prompt", "x", "--vae", golden.Path(t, "vae.safetensors"),
		"--text-encoder", enc, "--tokenizer", golden.Path(t, "tokenizer"), "--resolution", "512", "--aspect", "1:1",
		"--frames", "1", "--no-cache", "-o", filepath.Join(dir, "o.gif")}
	for _, c := range []struct {
		args  []string
		frags []string
	}{
		{[]string{"--image", img, "--dit-high", golden.Path(t, "dit_weights.pth"), "--dit-low", low}, []string{"dit_weights.pth", "high-noise", "16 input channels"}},
		{[]string{"--image", img, "--dit-high", high, "--dit-low", golden.Path(t, "i2v_low.pth")}, []string{"not a Wan2.2 I2V expert pair", "i2v_low.pth"}},
		{[]string{"--image", filepath.Join(dir, "none.png"), "--dit-high", high, "--dit-low", low}, []string{"none.png"}},
		{[]string{"--image", img, "--dit-high", high}, []string{"--dit-low"}},
		{[]string{"--image", img, "--model", dir}, []string{"TurboWan2.2-I2V-A14B-high-720P.pth", "TurboWan2.2-I2V-A14B-low-720P"}},
		{[]string{"--dit-high", high, "--dit-low", low}, []string{"--image"}},
		{[]string{"--image", img, "--dit-high", high, "--dit-low", low, "--sampler", "unipc", "--steps", "10"}, []string{"rCM"}},
	} {
		_, _, err := run(t, append(append([]string{"generate"}, c.args...), common...)...)
		if err == nil {
			t.Errorf("%v: want an error", c.args)
			continue
		}
		for _, f := range c.frags {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("%v: error %q does not mention %q", c.args, err, f)
			}
		}
		t.Logf("%v: %v", c.args, err)
	}
}
