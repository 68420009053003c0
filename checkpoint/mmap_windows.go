//go:build windows

package checkpoint

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/turbodiffusion-go/turbodiffusion/internal/regfile"
)

// mapFile maps a whole file read-only (see mmap_unix.go for why). The
// mapping object's handle is closed at once: the view holds its own
// reference to it, and the view keeps the file open until UnmapViewOfFile.
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
		return []byte{}, nil // CreateFileMapping refuses an empty file
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: %d bytes is too large to map on this platform", path, size)
	}
	h, err := windows.CreateFileMapping(windows.Handle(f.Fd()), nil, windows.PAGE_READONLY, uint32(uint64(size)>>32), uint32(size), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: CreateFileMapping: %w", path, err)
	}
	addr, err := windows.MapViewOfFile(h, windows.FILE_MAP_READ, 0, 0, uintptr(size))
	windows.CloseHandle(h)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: MapViewOfFile: %w", path, err)
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), addr)), int(size)), nil
}

// unmap releases a mapping made by mapFile; empty files have none.
func unmap(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	return windows.UnmapViewOfFile(uintptr(unsafe.Pointer(&data[0])))
}
