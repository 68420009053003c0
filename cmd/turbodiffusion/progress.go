package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// progress draws one line per stage on stderr: a bar for counted stages
// (steps, decoding), a status line for the others.
type progress struct {
	w     io.Writer
	stage string
	start time.Time
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

func (p *progress) event(ev pipeline.Event) {
	if ev.Stage != p.stage {
		if p.stage != "" {
			fmt.Fprintln(p.w)
		}
		p.stage, p.start = ev.Stage, time.Now()
	}
	label := map[string]string{"tokenize": "tokenizer", "encode": "text encoder", "load-dit": "loading DiT",
		"step": "denoising", "load-vae": "loading VAE", "decode": "VAE decode", "write": "writing video"}[ev.Stage]
	if label == "" {
		label = ev.Stage
	}
	line := fmt.Sprintf("%-13s", label)
	if ev.Total > 0 {
		const width = 24
		n := width * ev.Done / ev.Total
		line += fmt.Sprintf(" [%s%s] %d/%d", strings.Repeat("#", n), strings.Repeat(".", width-n), ev.Done, ev.Total)
	}
	if ev.Note != "" {
		line += " " + ev.Note
	}
	line += fmt.Sprintf("  %.1fs", time.Since(p.start).Seconds())
	fmt.Fprintf(p.w, "\r%-78s", line)
}

func (p *progress) done() {
	if p.stage != "" {
		fmt.Fprintln(p.w)
	}
}
