//go:build unix

package cuda

import "github.com/ebitengine/purego"

// openPath loads the library file at path (dlopen, resolving every symbol
// now; global makes its symbols serve libraries loaded later, as libnvrtc
// needs for its builtins).
func openPath(path string, global bool) (uintptr, error) {
	mode := purego.RTLD_NOW | purego.RTLD_LOCAL
	if global {
		mode = purego.RTLD_NOW | purego.RTLD_GLOBAL
	}
	return purego.Dlopen(path, mode)
}

// openName loads a library by bare name through the system loader's path.
func openName(name string, global bool) (uintptr, error) { return openPath(name, global) }

// symbol is the address of an exported function.
func symbol(h uintptr, name string) (uintptr, error) { return purego.Dlsym(h, name) }

// modulePath is the file a handle came from; dlopen does not say ("").
func modulePath(uintptr) string { return "" }
