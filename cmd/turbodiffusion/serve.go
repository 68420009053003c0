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
  GET  /v1/videos               all jobs, newest first
  GET  /v1/videos/{id}          status and progress of one job
  GET  /v1/videos/{id}/content  the video once done`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.keepText = true // a server answers many prompts: keep umT5 resident
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
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "serving on http://%s (backend %s, videos in %s)\n", ln.Addr(), be.Name(), outDir)
			srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8188", "listen address")
	cmd.Flags().StringVar(&outDir, "out-dir", "turbodiffusion-videos", "folder for generated videos")
	root.AddCommand(cmd)
}
