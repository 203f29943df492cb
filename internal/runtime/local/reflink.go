package local

import "errors"

// errNoReflink: the filesystem cannot clone files.
var errNoReflink = errors.New("the filesystem has no reflinks")
