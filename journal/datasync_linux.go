//go:build linux

package journal

import (
	"os"
	"syscall"
)

// datasync flushes f's data and the metadata needed to read it back (fdatasync(2)):
// in a segment whose blocks are already allocated and zeroed, the records alone, without
// the journal commit of the inode that every fsync of a growing file costs.
func datasync(f *os.File) error {
	err := syscall.Fdatasync(int(f.Fd()))
	for err == syscall.EINTR {
		err = syscall.Fdatasync(int(f.Fd()))
	}
	if err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}
