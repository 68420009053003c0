package backend

import "github.com/turbodiffusion-go/turbodiffusion/internal/rgb24"

// Constants is an optional Core extension. MarkConstant promises that ts
// (model weights) keep their contents until they are freed, so a backend
// may cache forms derived from them — the CUDA convolutions' repacked
// weights — once instead of deriving them on every call. The cached forms
// are released with the tensors.
type Constants interface {
	MarkConstant(ts ...Tensor)
}

// AsyncDownloader is an optional Core extension for results read back
// while the device computes the next ones (the VAE's decoded chunks): the
// copy to host memory is queued behind the work queued so far and the call
// returns at once.
//
// Both methods take t over: the backend frees it once it has been copied,
// so the caller neither uses nor frees t afterwards. Every Pending must be
// finished by exactly one of its methods.
type AsyncDownloader interface {
	// DownloadAsync queues the copy of a float tensor; Pending.Floats gives
	// its values as float32, as Download would.
	DownloadAsync(t Tensor) Pending
	// DownloadFramesAsync converts a video t [3,F,H,W] whose values lie in
	// rng to F frames of interleaved RGB bytes on the device and queues
	// their copy; Pending.Frames gives them, bit for bit what rgb24.Frames
	// gives for Download(t).
	DownloadFramesAsync(t Tensor, rng rgb24.Range) Pending
}

// Pending is a download in flight (AsyncDownloader).
type Pending interface {
	// Floats waits for a DownloadAsync copy and returns the values.
	Floats() []float32
	// Frames waits for a DownloadFramesAsync copy and returns the frames
	// (H·W·3 bytes each).
	Frames() [][]uint8
	// Discard drops the download unread (an error stopped the caller),
	// releasing what it holds. It is a no-op after Floats or Frames.
	Discard()
}
