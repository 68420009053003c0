package main

// The backends this binary offers; each registers itself by name. CUDA is
// loaded at run time (purego), so offering it costs nothing without a GPU.
import (
	_ "github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
	_ "github.com/turbodiffusion-go/turbodiffusion/backend/cuda"
)
