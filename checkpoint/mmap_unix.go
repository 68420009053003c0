//go:build unix

package checkpoint

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/turbodiffusion-go/turbodiffusion/internal/regfile"
)

// mapFile maps a whole file read-only. Checkpoints are many gigabytes and a
// model touches each tensor once, so mapping (instead of reading) keeps the
// resident set to what is actually used.
func mapFile(path string) ([]byte, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size == 0 {
		return []byte{}, nil
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: %d bytes is too large to map on this platform", path, size)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return data, nil
}

// unmap releases a mapping made by mapFile; empty files have none.
func unmap(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	return unix.Munmap(data)
}
