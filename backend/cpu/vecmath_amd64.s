#include "textflag.h"

// AVX2 versions of scalar float32 math (vecmath_amd64.go): softmaxTile's
// two passes and GELUTanh. They perform exactly the scalar code's float32
// operations (expf, tanhf, ...) in the same order and without fused
// multiply-adds, so every element is bit-identical to the scalar result;
// only the order of the softmax row sum differs.

DATA expConsts<>+0(SB)/4, $0x3fb8aa3b
DATA expConsts<>+4(SB)/4, $0x3fb8aa3b
DATA expConsts<>+8(SB)/4, $0x3fb8aa3b
DATA expConsts<>+12(SB)/4, $0x3fb8aa3b
DATA expConsts<>+16(SB)/4, $0x3fb8aa3b
DATA expConsts<>+20(SB)/4, $0x3fb8aa3b
DATA expConsts<>+24(SB)/4, $0x3fb8aa3b
DATA expConsts<>+28(SB)/4, $0x3fb8aa3b
DATA expConsts<>+32(SB)/4, $0x4b400000
DATA expConsts<>+36(SB)/4, $0x4b400000
DATA expConsts<>+40(SB)/4, $0x4b400000
DATA expConsts<>+44(SB)/4, $0x4b400000
DATA expConsts<>+48(SB)/4, $0x4b400000
DATA expConsts<>+52(SB)/4, $0x4b400000
DATA expConsts<>+56(SB)/4, $0x4b400000
DATA expConsts<>+60(SB)/4, $0x4b400000
DATA expConsts<>+64(SB)/4, $0x3f318000
DATA expConsts<>+68(SB)/4, $0x3f318000
DATA expConsts<>+72(SB)/4, $0x3f318000
DATA expConsts<>+76(SB)/4, $0x3f318000
DATA expConsts<>+80(SB)/4, $0x3f318000
DATA expConsts<>+84(SB)/4, $0x3f318000
DATA expConsts<>+88(SB)/4, $0x3f318000
DATA expConsts<>+92(SB)/4, $0x3f318000
DATA expConsts<>+96(SB)/4, $0xb95e8083
DATA expConsts<>+100(SB)/4, $0xb95e8083
DATA expConsts<>+104(SB)/4, $0xb95e8083
DATA expConsts<>+108(SB)/4, $0xb95e8083
DATA expConsts<>+112(SB)/4, $0xb95e8083
DATA expConsts<>+116(SB)/4, $0xb95e8083
DATA expConsts<>+120(SB)/4, $0xb95e8083
DATA expConsts<>+124(SB)/4, $0xb95e8083
DATA expConsts<>+128(SB)/4, $0x39506967
DATA expConsts<>+132(SB)/4, $0x39506967
DATA expConsts<>+136(SB)/4, $0x39506967
DATA expConsts<>+140(SB)/4, $0x39506967
DATA expConsts<>+144(SB)/4, $0x39506967
DATA expConsts<>+148(SB)/4, $0x39506967
DATA expConsts<>+152(SB)/4, $0x39506967
DATA expConsts<>+156(SB)/4, $0x39506967
DATA expConsts<>+160(SB)/4, $0x3ab743ce
DATA expConsts<>+164(SB)/4, $0x3ab743ce
DATA expConsts<>+168(SB)/4, $0x3ab743ce
DATA expConsts<>+172(SB)/4, $0x3ab743ce
DATA expConsts<>+176(SB)/4, $0x3ab743ce
DATA expConsts<>+180(SB)/4, $0x3ab743ce
DATA expConsts<>+184(SB)/4, $0x3ab743ce
DATA expConsts<>+188(SB)/4, $0x3ab743ce
DATA expConsts<>+192(SB)/4, $0x3c088908
DATA expConsts<>+196(SB)/4, $0x3c088908
DATA expConsts<>+200(SB)/4, $0x3c088908
DATA expConsts<>+204(SB)/4, $0x3c088908
DATA expConsts<>+208(SB)/4, $0x3c088908
DATA expConsts<>+212(SB)/4, $0x3c088908
DATA expConsts<>+216(SB)/4, $0x3c088908
DATA expConsts<>+220(SB)/4, $0x3c088908
DATA expConsts<>+224(SB)/4, $0x3d2aa9c1
DATA expConsts<>+228(SB)/4, $0x3d2aa9c1
DATA expConsts<>+232(SB)/4, $0x3d2aa9c1
DATA expConsts<>+236(SB)/4, $0x3d2aa9c1
DATA expConsts<>+240(SB)/4, $0x3d2aa9c1
DATA expConsts<>+244(SB)/4, $0x3d2aa9c1
DATA expConsts<>+248(SB)/4, $0x3d2aa9c1
DATA expConsts<>+252(SB)/4, $0x3d2aa9c1
DATA expConsts<>+256(SB)/4, $0x3e2aaaaa
DATA expConsts<>+260(SB)/4, $0x3e2aaaaa
DATA expConsts<>+264(SB)/4, $0x3e2aaaaa
DATA expConsts<>+268(SB)/4, $0x3e2aaaaa
DATA expConsts<>+272(SB)/4, $0x3e2aaaaa
DATA expConsts<>+276(SB)/4, $0x3e2aaaaa
DATA expConsts<>+280(SB)/4, $0x3e2aaaaa
DATA expConsts<>+284(SB)/4, $0x3e2aaaaa
DATA expConsts<>+288(SB)/4, $0x3f000000
DATA expConsts<>+292(SB)/4, $0x3f000000
DATA expConsts<>+296(SB)/4, $0x3f000000
DATA expConsts<>+300(SB)/4, $0x3f000000
DATA expConsts<>+304(SB)/4, $0x3f000000
DATA expConsts<>+308(SB)/4, $0x3f000000
DATA expConsts<>+312(SB)/4, $0x3f000000
DATA expConsts<>+316(SB)/4, $0x3f000000
DATA expConsts<>+320(SB)/4, $0x3f800000
DATA expConsts<>+324(SB)/4, $0x3f800000
DATA expConsts<>+328(SB)/4, $0x3f800000
DATA expConsts<>+332(SB)/4, $0x3f800000
DATA expConsts<>+336(SB)/4, $0x3f800000
DATA expConsts<>+340(SB)/4, $0x3f800000
DATA expConsts<>+344(SB)/4, $0x3f800000
DATA expConsts<>+348(SB)/4, $0x3f800000
DATA expConsts<>+352(SB)/4, $0xc2aeac4f
DATA expConsts<>+356(SB)/4, $0xc2aeac4f
DATA expConsts<>+360(SB)/4, $0xc2aeac4f
DATA expConsts<>+364(SB)/4, $0xc2aeac4f
DATA expConsts<>+368(SB)/4, $0xc2aeac4f
DATA expConsts<>+372(SB)/4, $0xc2aeac4f
DATA expConsts<>+376(SB)/4, $0xc2aeac4f
DATA expConsts<>+380(SB)/4, $0xc2aeac4f
DATA expConsts<>+384(SB)/4, $0x0000007f
DATA expConsts<>+388(SB)/4, $0x0000007f
DATA expConsts<>+392(SB)/4, $0x0000007f
DATA expConsts<>+396(SB)/4, $0x0000007f
DATA expConsts<>+400(SB)/4, $0x0000007f
DATA expConsts<>+404(SB)/4, $0x0000007f
DATA expConsts<>+408(SB)/4, $0x0000007f
DATA expConsts<>+412(SB)/4, $0x0000007f
DATA expConsts<>+416(SB)/4, $0x00000001
DATA expConsts<>+420(SB)/4, $0x00000001
DATA expConsts<>+424(SB)/4, $0x00000001
DATA expConsts<>+428(SB)/4, $0x00000001
DATA expConsts<>+432(SB)/4, $0x00000001
DATA expConsts<>+436(SB)/4, $0x00000001
DATA expConsts<>+440(SB)/4, $0x00000001
DATA expConsts<>+444(SB)/4, $0x00000001
DATA expConsts<>+448(SB)/4, $0x00007fff
DATA expConsts<>+452(SB)/4, $0x00007fff
DATA expConsts<>+456(SB)/4, $0x00007fff
DATA expConsts<>+460(SB)/4, $0x00007fff
DATA expConsts<>+464(SB)/4, $0x00007fff
DATA expConsts<>+468(SB)/4, $0x00007fff
DATA expConsts<>+472(SB)/4, $0x00007fff
DATA expConsts<>+476(SB)/4, $0x00007fff
DATA expConsts<>+480(SB)/4, $0xffff0000
DATA expConsts<>+484(SB)/4, $0xffff0000
DATA expConsts<>+488(SB)/4, $0xffff0000
DATA expConsts<>+492(SB)/4, $0xffff0000
DATA expConsts<>+496(SB)/4, $0xffff0000
DATA expConsts<>+500(SB)/4, $0xffff0000
DATA expConsts<>+504(SB)/4, $0xffff0000
DATA expConsts<>+508(SB)/4, $0xffff0000
GLOBL expConsts<>(SB), RODATA|NOPTR, $512

// func scaleMaxAVX2(s *float32, n int, scale float32) float32
// s[i] *= scale for i < n (n a multiple of 8, ≥ 8); returns max s[i].
TEXT ·scaleMaxAVX2(SB), NOSPLIT, $0-28
	MOVQ         s+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS scale+16(FP), Y15
	VMOVUPS      (SI), Y1
	VMULPS       Y15, Y1, Y1
	VMOVAPS      Y1, Y14
smloop:
	VMOVUPS (SI), Y0
	VMULPS  Y15, Y0, Y0
	VMOVUPS Y0, (SI)
	VMAXPS  Y0, Y14, Y14
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     smloop
	VEXTRACTF128 $1, Y14, X1
	VMAXPS       X1, X14, X14
	VPERMILPS    $0x4e, X14, X1
	VMAXPS       X1, X14, X14
	VPERMILPS    $0xb1, X14, X1
	VMAXPS       X1, X14, X14
	VMOVSS       X14, ret+24(FP)
	VZEROUPPER
	RET

// func expSubAVX2(s *float32, n int, m float32, round bool) float32
// s[i] = expf(s[i] − m) for i < n (n a multiple of 8; inputs ≤ m), rounded
// to bf16 when round is set; returns the sum of the unrounded values.
TEXT ·expSubAVX2(SB), NOSPLIT, $0-28
	MOVQ         s+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS m+16(FP), Y15
	MOVBLZX      round+20(FP), DX
	VXORPS       Y14, Y14, Y14
	TESTQ        CX, CX
	JZ           esdone
esloop:
	VMOVUPS  (SI), Y0
	VSUBPS   Y15, Y0, Y0
	VMULPS   expConsts<>+0(SB), Y0, Y1
	VADDPS   expConsts<>+32(SB), Y1, Y1
	VSUBPS   expConsts<>+32(SB), Y1, Y1
	VMULPS   expConsts<>+64(SB), Y1, Y3
	VSUBPS   Y3, Y0, Y2
	VMULPS   expConsts<>+96(SB), Y1, Y3
	VSUBPS   Y3, Y2, Y2
	VMOVUPS  expConsts<>+128(SB), Y4
	VMULPS   Y2, Y4, Y4
	VADDPS   expConsts<>+160(SB), Y4, Y4
	VMULPS   Y2, Y4, Y4
	VADDPS   expConsts<>+192(SB), Y4, Y4
	VMULPS   Y2, Y4, Y4
	VADDPS   expConsts<>+224(SB), Y4, Y4
	VMULPS   Y2, Y4, Y4
	VADDPS   expConsts<>+256(SB), Y4, Y4
	VMULPS   Y2, Y4, Y4
	VADDPS   expConsts<>+288(SB), Y4, Y4
	VMULPS   Y2, Y4, Y4
	VMULPS   Y2, Y4, Y4
	VADDPS   Y2, Y4, Y4
	VADDPS   expConsts<>+320(SB), Y4, Y4
	VCVTPS2DQ Y1, Y5
	VPADDD   expConsts<>+384(SB), Y5, Y5
	VPSLLD   $23, Y5, Y5
	VMULPS   Y5, Y4, Y4
	VCMPPS   $13, expConsts<>+352(SB), Y0, Y5
	VANDPS   Y5, Y4, Y4
	VADDPS   Y4, Y14, Y14
	TESTQ    DX, DX
	JZ       esstore
	VPSRLD   $16, Y4, Y3
	VPAND    expConsts<>+416(SB), Y3, Y3
	VPADDD   expConsts<>+448(SB), Y3, Y3
	VPADDD   Y3, Y4, Y4
	VPAND    expConsts<>+480(SB), Y4, Y4
esstore:
	VMOVUPS  Y4, (SI)
	ADDQ     $32, SI
	SUBQ     $8, CX
	JNZ      esloop
esdone:
	VEXTRACTF128 $1, Y14, X1
	VADDPS       X1, X14, X14
	VPERMILPS    $0x4e, X14, X1
	VADDPS       X1, X14, X14
	VPERMILPS    $0xb1, X14, X1
	VADDPS       X1, X14, X14
	VMOVSS       X14, ret+24(FP)
	VZEROUPPER
	RET


DATA geluConsts<>+0(SB)/4, $0x3f4c422a
DATA geluConsts<>+4(SB)/4, $0x3f4c422a
DATA geluConsts<>+8(SB)/4, $0x3f4c422a
DATA geluConsts<>+12(SB)/4, $0x3f4c422a
DATA geluConsts<>+16(SB)/4, $0x3f4c422a
DATA geluConsts<>+20(SB)/4, $0x3f4c422a
DATA geluConsts<>+24(SB)/4, $0x3f4c422a
DATA geluConsts<>+28(SB)/4, $0x3f4c422a
DATA geluConsts<>+32(SB)/4, $0x3d372713
DATA geluConsts<>+36(SB)/4, $0x3d372713
DATA geluConsts<>+40(SB)/4, $0x3d372713
DATA geluConsts<>+44(SB)/4, $0x3d372713
DATA geluConsts<>+48(SB)/4, $0x3d372713
DATA geluConsts<>+52(SB)/4, $0x3d372713
DATA geluConsts<>+56(SB)/4, $0x3d372713
DATA geluConsts<>+60(SB)/4, $0x3d372713
DATA geluConsts<>+64(SB)/4, $0x3f000000
DATA geluConsts<>+68(SB)/4, $0x3f000000
DATA geluConsts<>+72(SB)/4, $0x3f000000
DATA geluConsts<>+76(SB)/4, $0x3f000000
DATA geluConsts<>+80(SB)/4, $0x3f000000
DATA geluConsts<>+84(SB)/4, $0x3f000000
DATA geluConsts<>+88(SB)/4, $0x3f000000
DATA geluConsts<>+92(SB)/4, $0x3f000000
DATA geluConsts<>+96(SB)/4, $0x40000000
DATA geluConsts<>+100(SB)/4, $0x40000000
DATA geluConsts<>+104(SB)/4, $0x40000000
DATA geluConsts<>+108(SB)/4, $0x40000000
DATA geluConsts<>+112(SB)/4, $0x40000000
DATA geluConsts<>+116(SB)/4, $0x40000000
DATA geluConsts<>+120(SB)/4, $0x40000000
DATA geluConsts<>+124(SB)/4, $0x40000000
DATA geluConsts<>+128(SB)/4, $0x7fffffff
DATA geluConsts<>+132(SB)/4, $0x7fffffff
DATA geluConsts<>+136(SB)/4, $0x7fffffff
DATA geluConsts<>+140(SB)/4, $0x7fffffff
DATA geluConsts<>+144(SB)/4, $0x7fffffff
DATA geluConsts<>+148(SB)/4, $0x7fffffff
DATA geluConsts<>+152(SB)/4, $0x7fffffff
DATA geluConsts<>+156(SB)/4, $0x7fffffff
DATA geluConsts<>+160(SB)/4, $0x80000000
DATA geluConsts<>+164(SB)/4, $0x80000000
DATA geluConsts<>+168(SB)/4, $0x80000000
DATA geluConsts<>+172(SB)/4, $0x80000000
DATA geluConsts<>+176(SB)/4, $0x80000000
DATA geluConsts<>+180(SB)/4, $0x80000000
DATA geluConsts<>+184(SB)/4, $0x80000000
DATA geluConsts<>+188(SB)/4, $0x80000000
DATA geluConsts<>+192(SB)/4, $0x411028f6
DATA geluConsts<>+196(SB)/4, $0x411028f6
DATA geluConsts<>+200(SB)/4, $0x411028f6
DATA geluConsts<>+204(SB)/4, $0x411028f6
DATA geluConsts<>+208(SB)/4, $0x411028f6
DATA geluConsts<>+212(SB)/4, $0x411028f6
DATA geluConsts<>+216(SB)/4, $0x411028f6
DATA geluConsts<>+220(SB)/4, $0x411028f6
DATA geluConsts<>+224(SB)/4, $0x3f200000
DATA geluConsts<>+228(SB)/4, $0x3f200000
DATA geluConsts<>+232(SB)/4, $0x3f200000
DATA geluConsts<>+236(SB)/4, $0x3f200000
DATA geluConsts<>+240(SB)/4, $0x3f200000
DATA geluConsts<>+244(SB)/4, $0x3f200000
DATA geluConsts<>+248(SB)/4, $0x3f200000
DATA geluConsts<>+252(SB)/4, $0x3f200000
DATA geluConsts<>+256(SB)/4, $0xbbbaf0ea
DATA geluConsts<>+260(SB)/4, $0xbbbaf0ea
DATA geluConsts<>+264(SB)/4, $0xbbbaf0ea
DATA geluConsts<>+268(SB)/4, $0xbbbaf0ea
DATA geluConsts<>+272(SB)/4, $0xbbbaf0ea
DATA geluConsts<>+276(SB)/4, $0xbbbaf0ea
DATA geluConsts<>+280(SB)/4, $0xbbbaf0ea
DATA geluConsts<>+284(SB)/4, $0xbbbaf0ea
DATA geluConsts<>+288(SB)/4, $0x3ca9134e
DATA geluConsts<>+292(SB)/4, $0x3ca9134e
DATA geluConsts<>+296(SB)/4, $0x3ca9134e
DATA geluConsts<>+300(SB)/4, $0x3ca9134e
DATA geluConsts<>+304(SB)/4, $0x3ca9134e
DATA geluConsts<>+308(SB)/4, $0x3ca9134e
DATA geluConsts<>+312(SB)/4, $0x3ca9134e
DATA geluConsts<>+316(SB)/4, $0x3ca9134e
DATA geluConsts<>+320(SB)/4, $0xbd5c1e2d
DATA geluConsts<>+324(SB)/4, $0xbd5c1e2d
DATA geluConsts<>+328(SB)/4, $0xbd5c1e2d
DATA geluConsts<>+332(SB)/4, $0xbd5c1e2d
DATA geluConsts<>+336(SB)/4, $0xbd5c1e2d
DATA geluConsts<>+340(SB)/4, $0xbd5c1e2d
DATA geluConsts<>+344(SB)/4, $0xbd5c1e2d
DATA geluConsts<>+348(SB)/4, $0xbd5c1e2d
DATA geluConsts<>+352(SB)/4, $0x3e088393
DATA geluConsts<>+356(SB)/4, $0x3e088393
DATA geluConsts<>+360(SB)/4, $0x3e088393
DATA geluConsts<>+364(SB)/4, $0x3e088393
DATA geluConsts<>+368(SB)/4, $0x3e088393
DATA geluConsts<>+372(SB)/4, $0x3e088393
DATA geluConsts<>+376(SB)/4, $0x3e088393
DATA geluConsts<>+380(SB)/4, $0x3e088393
DATA geluConsts<>+384(SB)/4, $0xbeaaaa99
DATA geluConsts<>+388(SB)/4, $0xbeaaaa99
DATA geluConsts<>+392(SB)/4, $0xbeaaaa99
DATA geluConsts<>+396(SB)/4, $0xbeaaaa99
DATA geluConsts<>+400(SB)/4, $0xbeaaaa99
DATA geluConsts<>+404(SB)/4, $0xbeaaaa99
DATA geluConsts<>+408(SB)/4, $0xbeaaaa99
DATA geluConsts<>+412(SB)/4, $0xbeaaaa99
GLOBL geluConsts<>(SB), RODATA|NOPTR, $416

// func geluTanhAVX2(dst, src *float32, n int)
//
// dst[i] = geluTanh(src[i]) for i < n (n a multiple of 8, ≥ 8), with the
// scalar code's float32 operations in the same order (tanhf's polynomial,
// exponential and saturated branches are all computed and blended), so
// results are bit-identical for every non-NaN input.
TEXT ·geluTanhAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

gloop:
	VMOVUPS (SI), Y0
	VMULPS  Y0, Y0, Y1
	VMULPS  Y0, Y1, Y1
	VMULPS  geluConsts<>+32(SB), Y1, Y1
	VADDPS  Y0, Y1, Y1
	VMULPS  geluConsts<>+0(SB), Y1, Y1
	VANDPS  geluConsts<>+128(SB), Y1, Y2
	VANDPS  geluConsts<>+160(SB), Y1, Y3

	// polynomial branch: ((p·z)·x) + x
	VMULPS  Y1, Y1, Y4
	VMOVUPS geluConsts<>+256(SB), Y5
	VMULPS  Y4, Y5, Y5
	VADDPS  geluConsts<>+288(SB), Y5, Y5
	VMULPS  Y4, Y5, Y5
	VADDPS  geluConsts<>+320(SB), Y5, Y5
	VMULPS  Y4, Y5, Y5
	VADDPS  geluConsts<>+352(SB), Y5, Y5
	VMULPS  Y4, Y5, Y5
	VADDPS  geluConsts<>+384(SB), Y5, Y5
	VMULPS  Y4, Y5, Y5
	VMULPS  Y1, Y5, Y5
	VADDPS  Y1, Y5, Y5

	// exponential branch: 1 − 2/(expf(2|x|)+1)
	VADDPS  Y2, Y2, Y6
	VMULPS  expConsts<>+0(SB), Y6, Y8
	VADDPS  expConsts<>+32(SB), Y8, Y8
	VSUBPS  expConsts<>+32(SB), Y8, Y8
	VMULPS  expConsts<>+64(SB), Y8, Y9
	VSUBPS  Y9, Y6, Y10
	VMULPS  expConsts<>+96(SB), Y8, Y9
	VSUBPS  Y9, Y10, Y10
	VMOVUPS expConsts<>+128(SB), Y11
	VMULPS  Y10, Y11, Y11
	VADDPS  expConsts<>+160(SB), Y11, Y11
	VMULPS  Y10, Y11, Y11
	VADDPS  expConsts<>+192(SB), Y11, Y11
	VMULPS  Y10, Y11, Y11
	VADDPS  expConsts<>+224(SB), Y11, Y11
	VMULPS  Y10, Y11, Y11
	VADDPS  expConsts<>+256(SB), Y11, Y11
	VMULPS  Y10, Y11, Y11
	VADDPS  expConsts<>+288(SB), Y11, Y11
	VMULPS  Y10, Y11, Y11
	VMULPS  Y10, Y11, Y11
	VADDPS  Y10, Y11, Y11
	VADDPS  expConsts<>+320(SB), Y11, Y11
	VCVTPS2DQ Y8, Y12
	VPADDD  expConsts<>+384(SB), Y12, Y12
	VPSLLD  $23, Y12, Y12
	VMULPS  Y12, Y11, Y7
	VADDPS  expConsts<>+320(SB), Y7, Y7
	VMOVUPS geluConsts<>+96(SB), Y8
	VDIVPS  Y7, Y8, Y7
	VMOVUPS expConsts<>+320(SB), Y8
	VSUBPS  Y7, Y8, Y7

	// saturate above 9.01, restore the sign, polynomial below 0.625
	VCMPPS    $14, geluConsts<>+192(SB), Y2, Y9
	VBLENDVPS Y9, Y8, Y7, Y7
	VXORPS    Y3, Y7, Y7
	VCMPPS    $1, geluConsts<>+224(SB), Y2, Y9
	VBLENDVPS Y9, Y5, Y7, Y7

	// (0.5·v)·(1+t)
	VADDPS  Y8, Y7, Y7
	VMULPS  geluConsts<>+64(SB), Y0, Y9
	VMULPS  Y7, Y9, Y9
	VMOVUPS Y9, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     gloop
	VZEROUPPER
	RET
