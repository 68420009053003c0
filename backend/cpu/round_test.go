package cpu

import (
	"math"
	"testing"

	"github.com/turbodiffusion-go/turbodiffusion/tensor"
)

// The vector rounding must equal tensor.RoundBF16 bit for bit, NaNs,
// infinities, subnormals and ties included.
func TestRoundBF16MatchesScalar(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := newRand(80)
		bits := []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7fffffff, 0xffffffff, 0x7f800001,
			0x00000001, 0x807fffff, 0x3f808000, 0x3f818000, 0x3f807fff, 0x7f7fffff, 0xff7fffff, 0x7f7f8000}
		for i := 0; i < 1<<20; i++ {
			bits = append(bits, r.Uint32())
		}
		for i := 0; i < 1<<16; i++ { // ties: low half exactly 0x8000
			bits = append(bits, r.Uint32()&0xffff0000|0x8000)
		}
		x := make([]float32, len(bits))
		for i, b := range bits {
			x[i] = math.Float32frombits(b)
		}
		roundBF16(x[:len(x)-3]) // a length that leaves a scalar tail
		roundBF16(x[len(x)-3:])
		for i, b := range bits {
			want := tensor.RoundBF16(math.Float32frombits(b))
			if math.Float32bits(x[i]) != math.Float32bits(want) {
				t.Fatalf("bits %#08x: got %#08x, want %#08x", b, math.Float32bits(x[i]), math.Float32bits(want))
			}
		}
	})
}
