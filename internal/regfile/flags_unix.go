//go:build unix

package regfile

import "syscall"

// openFlags: O_NONBLOCK makes the open itself return for a FIFO without a
// writer; it has no effect on reading a regular file.
const openFlags = syscall.O_NONBLOCK
