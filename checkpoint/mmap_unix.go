//go:build unix

package checkpoint

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// mapFile maps a whole file read-only. Checkpoints are many gigabytes and a
// model touches each tensor once, so mapping (instead of reading) keeps the
// resident set to what is actually used.
func mapFile(path string) ([]byte, error) {
	f, size, err := openForMap(path)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return []byte{}, nil // an empty file has nothing to map
	}
	defer f.Close()
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
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
