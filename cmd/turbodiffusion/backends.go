package main

// The backends this binary offers; each registers itself by name.
import (
	_ "github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
)
