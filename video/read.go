package video

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// ReadMP4 decodes a video file back to RGB frames of the given size with
// ffmpeg. Tests use it to check what was written; it is also handy for
// image-to-video inputs.
func ReadMP4(path string, width, height int) ([][]byte, error) {
	ff, err := FFmpeg()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(ff, "-loglevel", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ffmpeg decode %s: %v: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	size := width * height * 3
	if out.Len()%size != 0 {
		return nil, fmt.Errorf("%s: decoded %d bytes, not a multiple of a %dx%d frame", path, out.Len(), width, height)
	}
	var frames [][]byte
	b := out.Bytes()
	for i := 0; i+size <= len(b); i += size {
		frames = append(frames, b[i:i+size])
	}
	return frames, nil
}
