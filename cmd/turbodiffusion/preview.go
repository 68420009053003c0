package main

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"sync"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// previewWriter writes each live preview as a PNG (the preview's frames side
// by side) into a folder, on its own goroutine so the sampling loop does not
// wait for the disk.
type previewWriter struct {
	dir  string
	ch   chan pipeline.Preview
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func newPreviewWriter(dir string) (*previewWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--preview %s: %w", dir, err)
	}
	w := &previewWriter{dir: dir, ch: make(chan pipeline.Preview, 8), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for p := range w.ch {
			if err := w.write(p); err != nil {
				w.mu.Lock()
				if w.err == nil {
					w.err = err
				}
				w.mu.Unlock()
			}
		}
	}()
	return w, nil
}

// send queues a preview; when the writer is behind, it is dropped (a later
// step's preview replaces it anyway).
func (w *previewWriter) send(p pipeline.Preview) {
	select {
	case w.ch <- p:
	default:
	}
}

// close waits for the queued previews and reports the first write error.
func (w *previewWriter) close() error {
	close(w.ch)
	<-w.done
	return w.err
}

// write saves p as step_<k>.png (sample_<s>_step_<k>.png past the first
// sample), written under a temporary name and renamed, so a viewer never
// reads half a file.
func (w *previewWriter) write(p pipeline.Preview) error {
	name := fmt.Sprintf("step_%d.png", p.Step)
	if p.Sample > 0 {
		name = fmt.Sprintf("sample_%d_step_%d.png", p.Sample+1, p.Step)
	}
	img := image.NewRGBA(image.Rect(0, 0, p.Width*len(p.Frames), p.Height))
	for i, f := range p.Frames {
		for y := 0; y < p.Height; y++ {
			for x := 0; x < p.Width; x++ {
				s, d := (y*p.Width+x)*3, img.PixOffset(i*p.Width+x, y)
				img.Pix[d], img.Pix[d+1], img.Pix[d+2], img.Pix[d+3] = f[s], f[s+1], f[s+2], 0xff
			}
		}
	}
	path := filepath.Join(w.dir, name)
	tmp := path + ".partial"
	out, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("preview: %w", err)
	}
	err = png.Encode(out, img)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("preview %s: %w", path, err)
	}
	return nil
}
