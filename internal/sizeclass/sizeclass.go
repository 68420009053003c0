// Package sizeclass is the CUDA pool's allocation size classes, in a
// package of its own so that the pool (backend/cuda) and the memory
// planner (memplan) round with the same function without the backend
// importing the planner's model packages.
package sizeclass

// Round is the size class of an n-byte allocation: powers of two from 512
// bytes up to 1 MiB, then multiples of 2 MiB. A pool that reuses blocks by
// class hands out this many bytes; n ≤ 0 counts as 1.
func Round(n int64) int64 {
	if n <= 0 {
		n = 1
	}
	if n <= 1<<20 {
		c := int64(512)
		for c < n {
			c <<= 1
		}
		return c
	}
	const g = 2 << 20
	return (n + g - 1) / g * g
}
