package cpu

import "github.com/turbodiffusion-go/turbodiffusion/backend"

func init() {
	backend.Register("cpu", func() (backend.Core, error) { return New(), nil })
}
