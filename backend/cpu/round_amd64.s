#include "textflag.h"

DATA bf16Consts<>+0(SB)/4, $0x00000001
DATA bf16Consts<>+4(SB)/4, $0x00007fff
DATA bf16Consts<>+8(SB)/4, $0xffff0000
DATA bf16Consts<>+12(SB)/4, $0x00400000
GLOBL bf16Consts<>(SB), RODATA|NOPTR, $16

// func roundBF16AVX2(x *float32, n int)
//
// Rounds x[0:n] (n a multiple of 8, ≥ 8) to bfloat16 in place, ties to
// even, exactly as tensor.RoundBF16: NaNs keep their top bits with the
// quiet bit set.
TEXT ·roundBF16AVX2(SB), NOSPLIT, $0-16
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VPBROADCASTD bf16Consts<>+0(SB), Y8
	VPBROADCASTD bf16Consts<>+4(SB), Y9
	VPBROADCASTD bf16Consts<>+8(SB), Y10
	VPBROADCASTD bf16Consts<>+12(SB), Y11

rloop:
	VMOVUPS   (SI), Y0
	VPSRLD    $16, Y0, Y1
	VPAND     Y8, Y1, Y1
	VPADDD    Y9, Y1, Y1
	VPADDD    Y0, Y1, Y1
	VPAND     Y10, Y1, Y1
	VPOR      Y11, Y0, Y2
	VPAND     Y10, Y2, Y2
	VCMPPS    $3, Y0, Y0, Y3
	VBLENDVPS Y3, Y2, Y1, Y1
	VMOVUPS   Y1, (SI)
	ADDQ      $32, SI
	SUBQ      $8, CX
	JNZ       rloop
	VZEROUPPER
	RET
