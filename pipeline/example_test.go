package pipeline_test

import (
	"context"
	"fmt"
	"log"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	_ "github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	"github.com/turbodiffusion-go/turbodiffusion/pipeline"
)

// The README's library example, compiled with the tests (not run: it needs
// the released model files).
func Example() {
	ctx := context.Background()
	be, note, err := backend.Open("auto") // cuda if usable, else cpu (note says why)
	if err != nil {
		log.Fatal(err)
	}
	if note != "" {
		log.Print(note)
	}
	cpuBE, _, _ := backend.Open("cpu")
	files, err := pipeline.FindModels("/models", pipeline.DefaultVariant, pipeline.Files{})
	if err != nil {
		log.Fatal(err) // names every missing file and where to download it
	}
	eng, err := pipeline.New(be, cpuBE, pipeline.Options{Files: files, DiTOptions: pipeline.DiTOptions{Attention: backend.SLA, TopK: 0.1}})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	res, err := eng.Generate(ctx, pipeline.Request{Prompt: "a fox in the snow", Steps: 4, SigmaMax: 80,
		Size: pipeline.Size{W: 832, H: 480}, Frames: 81, Samples: 1, Output: "fox.mp4"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Output.Path) // fox.mp4, encoded during the VAE decode (fox.gif without ffmpeg)
}
