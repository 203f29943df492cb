package reconcile

import (
	"errors"
	"time"
)

// Result says when to reconcile a key again, as controller-runtime's
// reconcile.Result does. A zero Result with a nil error means the key is
// settled; an error is retried with backoff unless it is Terminal.
type Result struct {
	// RequeueAfter, when positive, looks at the key again after it.
	RequeueAfter time.Duration
}

// TerminalError is an error that retrying cannot fix (a failed build of
// this SHA, a refused request): the key is not retried with backoff, only
// looked at again when its input changes.
type TerminalError struct{ Err error }

// Terminal wraps err so that the reconciler does not retry it. Test for
// it with errors.As(err, new(*TerminalError)) or errors.Is(err,
// Terminal(nil)).
func Terminal(err error) error { return &TerminalError{Err: err} }

func (e *TerminalError) Error() string {
	if e.Err == nil {
		return "terminal error"
	}
	return e.Err.Error()
}

func (e *TerminalError) Unwrap() error { return e.Err }

// Is makes every TerminalError match Terminal(nil).
func (e *TerminalError) Is(target error) bool {
	_, ok := target.(*TerminalError)
	return ok
}

// IsTerminal reports whether err is, or wraps, a TerminalError.
func IsTerminal(err error) bool {
	var te *TerminalError
	return errors.As(err, &te)
}
