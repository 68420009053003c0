//go:build windows

package cuda

import (
	"path/filepath"

	"golang.org/x/sys/windows"
)

// openPath loads the DLL at path. LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR lets the
// DLL's own dependencies come from its folder (cuBLASLt's from the toolkit's
// bin); it needs an absolute path. Windows has no RTLD_GLOBAL: a DLL loaded
// by name later (NVRTC loading its builtins) is matched against the modules
// already loaded, which is why NVRTC's builtins are loaded first as on Linux.
func openPath(path string, _ bool) (uintptr, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, err
	}
	h, err := windows.LoadLibraryEx(abs, 0, windows.LOAD_LIBRARY_SEARCH_DEFAULT_DIRS|windows.LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR)
	return uintptr(h), err
}

// openName loads a DLL by bare name from the application folder, System32
// and the folders added with AddDllDirectory: not the current folder or
// %PATH% (those were searched explicitly, by SearchDirs).
func openName(name string, _ bool) (uintptr, error) {
	h, err := windows.LoadLibraryEx(name, 0, windows.LOAD_LIBRARY_SEARCH_DEFAULT_DIRS)
	return uintptr(h), err
}

// symbol is the address of an exported function.
func symbol(h uintptr, name string) (uintptr, error) {
	return windows.GetProcAddress(windows.Handle(h), name)
}

// modulePath is the file a loaded DLL came from, so a library found by the
// system loader still has a folder (NVRTC's builtins are looked for there).
func modulePath(h uintptr) string {
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n, err := windows.GetModuleFileName(windows.Handle(h), &buf[0], uint32(len(buf)))
	if err != nil || n == 0 {
		return ""
	}
	return windows.UTF16ToString(buf[:n])
}
