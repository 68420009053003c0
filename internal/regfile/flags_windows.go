//go:build windows

package regfile

// openFlags is empty on Windows: it has no FIFOs in the file system whose
// open blocks, and Open still refuses what Stat says is not a regular file
// (a directory, a device such as NUL, a named pipe).
const openFlags = 0
