//go:build unix

package cpu

import "syscall"

// processCPUSeconds is the user+system CPU time of this process: on a
// shared machine, throughput per CPU-second is steadier than per wall
// second.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
