package local

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// cloneFile makes to a copy-on-write clone of from (FICLONE), where the
// filesystem has them (btrfs, XFS with reflink, bcachefs). Elsewhere
// (ext4, tmpfs) it is errNoReflink and makes nothing.
func cloneFile(from, to string, mode fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	err = unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(to)
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS) {
			return errNoReflink
		}
		return err
	}
	return nil
}
