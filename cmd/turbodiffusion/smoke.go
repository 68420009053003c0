package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
	"github.com/turbodiffusion-go/turbodiffusion/internal/testmodels"
	"github.com/turbodiffusion-go/turbodiffusion/models/umt5"
	"github.com/turbodiffusion-go/turbodiffusion/models/wan"
	"github.com/turbodiffusion-go/turbodiffusion/models/wanvae"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/tokenizer"
)

// The smoke test's tiny models: the real architectures at toy widths, with
// random weights made in memory, so an install can be checked end to end
// (tokenizer, umT5, DiT with SLA, rCM, VAE decode, video file) in seconds
// and without the 30 GB of released files.
var (
	smokeDiT = wan.Config{Type: wan.T2V, Dim: 256, FFNDim: 512, Heads: 2, HeadDim: 128, Layers: 2,
		InDim: 16, OutDim: 16, Patch: [3]int{1, 2, 2}, FreqDim: 256, TextDim: 64, TextLen: 512, Eps: 1e-6}
	smokeVAE = wanvae.Config{Dim: 12, ZDim: 16}
)

// smokeTokenizer writes a tiny SentencePiece-unigram tokenizer.json (the
// letters, a few words, </s>, <pad>, <unk>) into dir.
func smokeTokenizer(dir string) error {
	vocab := [][2]any{{"<pad>", 0.0}, {"</s>", 0.0}, {"<unk>", 0.0}, {"▁", -2.0}}
	for _, w := range []string{"▁a", "▁fox", "▁in", "▁the", "▁snow", "▁red"} {
		vocab = append(vocab, [2]any{w, -3.0})
	}
	for c := 'a'; c <= 'z'; c++ {
		vocab = append(vocab, [2]any{string(c), -5.0})
	}
	// An empty precompiled charsmap: a one-unit trie, no replacements.
	charsmap := base64.StdEncoding.EncodeToString([]byte{4, 0, 0, 0, 0, 0, 0, 0, 0})
	j := map[string]any{
		"normalizer":    map[string]any{"type": "Precompiled", "precompiled_charsmap": charsmap},
		"pre_tokenizer": map[string]any{"type": "Metaspace", "replacement": "▁"},
		"model":         map[string]any{"type": "Unigram", "unk_id": 2, "vocab": vocab},
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, tokenizer.TokenizerJSON), b, 0o644)
}

// runSmoke generates a short clip with the tiny models on device and
// prints each stage's time.
func runSmoke(w io.Writer, device string) error {
	dir, err := os.MkdirTemp("", "td-smoke-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := smokeTokenizer(dir); err != nil {
		return err
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return fmt.Errorf("smoke tokenizer: %w", err)
	}
	enc := umt5.Config{Vocab: tok.VocabSize(), Dim: smokeDiT.TextDim, DimAttn: 64, Heads: 2, HeadDim: 32, FFN: 128, Layers: 2, Buckets: 32, MaxDist: 128}
	files := map[string]checkpoint.File{
		"umt5": testmodels.NewRandom("random:tiny-umt5", umt5.Tensors(enc), 1),
		"dit":  testmodels.NewRandom("random:tiny-dit", wan.Tensors(smokeDiT), 2),
		"vae":  testmodels.NewRandom("random:tiny-vae", wanvae.Tensors(smokeVAE), 3),
	}
	be, note, err := backend.Open(device)
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(w, "note:", note)
	}
	cpuBE, _, _ := backend.Open("cpu")
	eng, err := pipeline.New(be, cpuBE, pipeline.Options{
		Files:      pipeline.Files{DiT: "dit", VAE: "vae", TextEncoder: "umt5", Tokenizer: dir},
		DiTOptions: pipeline.DiTOptions{Attention: backend.SLA, TopK: 0.5},
		OpenCheckpoint: func(p string) (checkpoint.File, error) {
			if f, ok := files[p]; ok {
				return f, nil
			}
			return nil, fmt.Errorf("smoke: no model %q", p)
		},
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	for _, n := range eng.Notes() {
		fmt.Fprintln(w, "note:", n)
	}
	req, err := pipeline.Params{Prompt: "a red fox in the snow", Size: pipeline.Size{W: 128, H: 128}, Frames: pipeline.Ptr(5),
		Steps: pipeline.Ptr(2), Seed: pipeline.Ptr[uint64](1), Output: filepath.Join(dir, "smoke.mp4")}.Request(pipeline.Limits{})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "smoke:      tiny random models (DiT %d wide, %d layers; VAE %d; umT5 %d), %dx%d × %d frames, %d rCM steps, SLA, on %s\n",
		smokeDiT.Dim, smokeDiT.Layers, smokeVAE.Dim, enc.Dim, req.Size.W, req.Size.H, req.Frames, req.Steps, be.Name())
	t0 := time.Now()
	res, err := eng.Generate(context.Background(), req)
	if err != nil {
		return fmt.Errorf("smoke generation failed: %w", err)
	}
	total := time.Since(t0)
	for _, t := range res.Timings {
		fmt.Fprintf(w, "  %-14s %8.1f ms\n", t.Stage, float64(t.Duration.Microseconds())/1000)
	}
	fmt.Fprintf(w, "  %-14s %8.1f ms (the first run includes kernel compilation on a GPU)\n", "total", float64(total.Microseconds())/1000)
	// The result must be a clip of the asked size, finite latents, frames
	// that are not all one value, and a written file.
	c := res.Clip
	if c == nil || len(c.Frames) != req.Frames || c.Width != req.Size.W || c.Height != req.Size.H {
		return fmt.Errorf("smoke: the clip is not %d frames of %dx%d", req.Frames, req.Size.W, req.Size.H)
	}
	for _, l := range res.Latents {
		for _, v := range l {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("smoke: the latent holds %v", v)
			}
		}
	}
	lo, hi := byte(255), byte(0)
	for _, f := range c.Frames {
		for _, v := range f {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if lo == hi {
		return fmt.Errorf("smoke: every pixel is %d", lo)
	}
	st, err := os.Stat(res.Output.Path)
	if err != nil || st.Size() == 0 {
		return fmt.Errorf("smoke: no video written: %v", err)
	}
	fmt.Fprintf(w, "smoke:      OK (%s, %d bytes%s)\n", filepath.Ext(res.Output.Path), st.Size(), map[bool]string{true: "; " + res.Output.Note, false: ""}[res.Output.Note != ""])
	return nil
}
