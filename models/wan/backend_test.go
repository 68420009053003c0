package wan

import (
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/backend"
	"github.com/turbodiffusion-go/turbodiffusion/backend/cpu"
)

// cpuDiT is the backend the model tests run on.
func cpuDiT(testing.TB) backend.DiT { return cpu.New() }
