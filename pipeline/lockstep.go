package pipeline

import "github.com/turbodiffusion-go/turbodiffusion/sampler"

// lockstep runs n sampling loops (run, one goroutine per sample) and serves
// all their network calls from the calling goroutine, in rounds: one call
// of sample 0, then of sample 1, ..., so every sample does step i before any
// does step i+1. A caller that switches models between steps (the I2V
// experts) thus switches once for all samples. After the first error every
// pending call gets that error, all loops end, and it is returned.
func lockstep(n int, run func(s int, v sampler.Velocity) ([]float32, error),
	serve func(s int, st sampler.Step, x []float32) ([]float32, error)) ([][]float32, error) {
	type reply struct {
		v   []float32
		err error
	}
	type call struct {
		st    sampler.Step
		x     []float32
		reply chan reply
	}
	calls := make([]chan call, n)
	done := make([]chan reply, n)
	for s := 0; s < n; s++ {
		calls[s], done[s] = make(chan call), make(chan reply, 1)
		go func(s int) {
			out, err := run(s, func(st sampler.Step, x []float32) ([]float32, error) {
				c := call{st, x, make(chan reply)}
				calls[s] <- c
				r := <-c.reply
				return r.v, r.err
			})
			done[s] <- reply{out, err}
		}(s)
	}
	outs := make([][]float32, n)
	finished := make([]bool, n)
	var firstErr error
	for left := n; left > 0; {
		for s := 0; s < n; s++ {
			if finished[s] {
				continue
			}
			select {
			case c := <-calls[s]:
				var r reply
				if firstErr != nil {
					r.err = firstErr
				} else if r.v, r.err = serve(s, c.st, c.x); r.err != nil {
					firstErr = r.err
				}
				c.reply <- r
			case d := <-done[s]:
				finished[s] = true
				left--
				outs[s] = d.v
				if d.err != nil && firstErr == nil {
					firstErr = d.err
				}
			}
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return outs, nil
}
