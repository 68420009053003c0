package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
	"github.com/turbodiffusion-go/turbodiffusion/server"
)

func init() {
	var f engineFlags
	var addr, outDir string
	cmd := &cobra.Command{
		Use:   "serve --model DIR [--addr 127.0.0.1:8188]",
		Short: "Serve the web page and HTTP API for interactive generation",
		Long: `Serve a web page and an HTTP API. Models load once and stay resident; jobs
run one at a time.

  POST /v1/videos               {"prompt": "...", "steps": 4, "resolution": "480p",
                                 "aspect": "16:9", "frames": 81, "seed": 1, "format": "mp4"}
                                with --i2v also "image": base64 PNG/JPEG (or a data URL)
                                and "adaptive_resolution": true|false
  GET  /v1/config               {"i2v": true|false}
  GET  /v1/videos               all jobs, newest first
  GET  /v1/videos/{id}          status and progress of one job
  GET  /v1/videos/{id}/content  the video once done`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.keepText = true // a server answers many prompts: keep umT5 resident
			if f.i2v && !cmd.Flags().Changed("variant") {
				f.variant = pipeline.DefaultI2VVariant
			}
			eng, be, err := f.open(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer eng.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			s, err := server.New(ctx, server.EngineGenerator{Engine: eng}, outDir)
			if err != nil {
				return err
			}
			s.I2V = f.i2v
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			mode := "text-to-video"
			if f.i2v {
				mode = "image-to-video"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "serving %s on http://%s (backend %s, videos in %s)\n", mode, ln.Addr(), be.Name(), outDir)
			srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&f.i2v, "i2v", false, "serve image-to-video with the Wan2.2 I2V A14B experts (requests carry an image)")
	cmd.Flags().StringVar(&f.files.DiTHigh, "dit-high", "", "I2V high-noise expert checkpoint (overrides the folder)")
	cmd.Flags().StringVar(&f.files.DiTLow, "dit-low", "", "I2V low-noise expert checkpoint (overrides the folder)")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8188", "listen address")
	cmd.Flags().StringVar(&outDir, "out-dir", "turbodiffusion-videos", "folder for generated videos")
	root.AddCommand(cmd)
}
