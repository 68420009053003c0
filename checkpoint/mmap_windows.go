//go:build windows

package checkpoint

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// mapFile maps a whole file read-only (see mmap_unix.go for why). The
// mapping object's handle is closed at once: the view holds its own
// reference to it, and the view keeps the file open until UnmapViewOfFile.
func mapFile(path string) ([]byte, error) {
	f, size, err := openForMap(path)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return []byte{}, nil // an empty file has nothing to map
	}
	defer f.Close()
	h, err := windows.CreateFileMapping(windows.Handle(f.Fd()), nil, windows.PAGE_READONLY, uint32(uint64(size)>>32), uint32(uint64(size)), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: CreateFileMapping: %w", path, err)
	}
	addr, err := windows.MapViewOfFile(h, windows.FILE_MAP_READ, 0, 0, uintptr(size))
	windows.CloseHandle(h)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: MapViewOfFile: %w", path, err)
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), addr)), size), nil
}

// unmap releases a mapping made by mapFile; empty files have none.
func unmap(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	return windows.UnmapViewOfFile(uintptr(unsafe.Pointer(&data[0])))
}
