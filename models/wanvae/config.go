// Package wanvae is the Wan2.1 video VAE (docs/NUMERICS.md §8): a causal 3-D
// convolutional autoencoder with 8x spatial and 4x temporal compression to
// 16 latent channels. It decodes one latent frame per chunk and encodes
// 1, 4, 4, ... pixel frames per chunk, carrying the causal convolutions'
// history between chunks exactly as the reference does, so memory is bounded
// by one chunk and the result equals the reference's.
package wanvae

import (
	"fmt"
	"strings"

	"github.com/turbodiffusion-go/turbodiffusion/checkpoint"
)

// The Wan2.1 latent statistics, fixed in the reference code (not stored in
// checkpoints): decode feeds z·std + mean to the decoder, encode returns
// (μ − mean)/std.
var (
	LatentMean = [16]float32{-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
		0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921}
	LatentStd = [16]float32{2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
		3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160}
)

// Config is the architecture read from a checkpoint's shapes. The real
// Wan2.1 VAE has Dim 96 and ZDim 16; channel multipliers [1,2,4,4], two
// residual blocks per stage and temporal downsampling in stages 1 and 2 are
// fixed by the architecture.
type Config struct {
	Dim  int // base channel count
	ZDim int // latent channels
}

// LatentChannels is the Wan2.1 VAE's latent width (z_dim).
const LatentChannels = len(LatentMean)

// Compression factors of the architecture.
const (
	SpatialFactor  = 8
	TemporalFactor = 4
)

// anchorKey is the key used to find a checkpoint's key prefix.
const anchorKey = "decoder.conv1.weight"

// detect finds the key prefix (e.g. "" for Wan2.1_VAE.pth, "weight." for the
// conformance file) and the config from tensor shapes.
func detect(f checkpoint.File) (prefix string, cfg Config, err error) {
	found := false
	for _, n := range f.Names() {
		if strings.HasSuffix(n, anchorKey) {
			p := strings.TrimSuffix(n, anchorKey)
			if !found || len(p) < len(prefix) {
				prefix, found = p, true
			}
		}
	}
	if !found {
		var missing []string
		for _, k := range []string{anchorKey, "decoder.head.2.weight", "conv2.weight", "encoder.conv1.weight", "conv1.weight"} {
			if _, ok := f.Info(k); !ok {
				missing = append(missing, k)
			}
		}
		return "", cfg, fmt.Errorf("%s: not a Wan2.1 VAE checkpoint: missing tensors %s", f.Path(), strings.Join(missing, ", "))
	}
	shape := func(key string, rank int) ([]int, error) {
		info, ok := f.Info(prefix + key)
		if !ok {
			return nil, fmt.Errorf("%s: not a Wan2.1 VAE checkpoint: missing tensor %q", f.Path(), prefix+key)
		}
		if len(info.Shape) != rank {
			return nil, fmt.Errorf("%s: tensor %q: want %d dimensions, got shape %v", f.Path(), prefix+key, rank, info.Shape)
		}
		return info.Shape, nil
	}
	head, err := shape("decoder.head.2.weight", 5)
	if err != nil {
		return "", cfg, err
	}
	conv1, err := shape(anchorKey, 5)
	if err != nil {
		return "", cfg, err
	}
	cfg = Config{Dim: head[1], ZDim: conv1[1]}
	if cfg.Dim <= 0 || cfg.Dim%2 != 0 {
		return "", cfg, fmt.Errorf("%s: tensor %q: base dim %d (shape %v) must be positive and even", f.Path(), prefix+"decoder.head.2.weight", cfg.Dim, head)
	}
	if cfg.ZDim != len(LatentMean) {
		return "", cfg, fmt.Errorf("%s: tensor %q: latent channels %d (shape %v), the Wan2.1 VAE has %d (the Wan2.2 VAE is not supported)",
			f.Path(), prefix+anchorKey, cfg.ZDim, conv1, len(LatentMean))
	}
	return prefix, cfg, nil
}

// ReadConfig reads a VAE checkpoint's configuration from its tensor
// shapes alone (no weights are read), as Load would find it.
func ReadConfig(f checkpoint.File) (Config, error) {
	_, cfg, err := detect(f)
	return cfg, err
}
