package pipeline

import (
	"sort"
	"strings"
)

// Size is a video frame size in pixels.
type Size struct{ W, H int }

// resolutions is the reference's VIDEO_RES_SIZE_INFO table (docs/NUMERICS.md §10.1):
// resolution name -> aspect ratio -> (width, height).
var resolutions = map[string]map[string]Size{
	"480p": {"1:1": {640, 640}, "4:3": {640, 480}, "3:4": {480, 640}, "16:9": {832, 480}, "9:16": {480, 832}},
	"720p": {"1:1": {960, 960}, "4:3": {960, 720}, "3:4": {720, 960}, "16:9": {1280, 720}, "9:16": {720, 1280}},
	"480":  {"1:1": {480, 480}, "4:3": {640, 480}, "3:4": {480, 640}, "16:9": {768, 432}, "9:16": {432, 768}},
	"512":  {"1:1": {512, 512}, "4:3": {640, 512}, "3:4": {512, 640}, "16:9": {640, 384}, "9:16": {384, 640}},
	"720":  {"1:1": {960, 960}, "4:3": {960, 704}, "3:4": {704, 960}, "16:9": {1280, 704}, "9:16": {704, 1280}},
}

// Resolution looks up the frame size of a resolution and aspect ratio.
func Resolution(res, aspect string) (Size, error) {
	byAspect, ok := resolutions[res]
	if !ok {
		return Size{}, fieldErr(FieldResolution, CodeInvalid, res, "choose one of %s", strings.Join(keys(resolutions), ", "))
	}
	s, ok := byAspect[aspect]
	if !ok {
		return Size{}, fieldErr(FieldAspect, CodeInvalid, aspect, "not an aspect ratio of %s (choose one of %s)", res, strings.Join(keys(byAspect), ", "))
	}
	return s, nil
}

// LatentShape returns the latent [16, T, H/8, W/8] for a frame count and
// size, checking the reference's constraints: frames = 4k+1, and H/8, W/8
// even (patch size 2).
func LatentShape(frames int, s Size) ([4]int, error) {
	if frames < 1 || (frames-1)%4 != 0 {
		return [4]int{}, fieldErr(FieldFrames, CodeInvalid, frames, "must be 4k+1 (1, 5, ..., 77, 81)")
	}
	if s.W <= 0 || s.H <= 0 || s.W%16 != 0 || s.H%16 != 0 {
		return [4]int{}, fieldErr(FieldSize, CodeInvalid, sizeString(s), "width and height must be positive multiples of 16")
	}
	return [4]int{16, 1 + (frames-1)/4, s.H / 8, s.W / 8}, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
