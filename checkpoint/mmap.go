package checkpoint

import (
	"fmt"
	"os"

	"github.com/turbodiffusion-go/turbodiffusion/internal/regfile"
)

// openForMap opens the file mapFile maps (mmap_unix.go, mmap_windows.go):
// a regular file, with its size, which must fit this platform's int. A nil
// file with size 0 means an empty file: there is nothing to map.
func openForMap(path string) (*os.File, int, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	size := st.Size()
	if size == 0 {
		f.Close()
		return nil, 0, nil
	}
	if int64(int(size)) != size {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %d bytes is too large to map on this platform", path, size)
	}
	return f, int(size), nil
}
