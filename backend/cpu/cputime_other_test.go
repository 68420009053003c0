//go:build !unix

package cpu

// processCPUSeconds is unavailable here; benchmarks then skip the metric.
func processCPUSeconds() float64 { return 0 }
