package cuda

import "github.com/turbodiffusion-go/turbodiffusion/backend"

func init() {
	backend.Register("cuda", func() (backend.Core, error) {
		b, err := Open()
		if err != nil {
			return nil, err
		}
		return b, nil
	})
}
