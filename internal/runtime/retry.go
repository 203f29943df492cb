package runtime

import (
	"errors"
	"net"
	"net/http"
)

// DialFailed reports whether err is a failure to connect, so the app
// never saw the request: a proxy may send it elsewhere.
func DialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Repeatable reports whether req may be sent again: an idempotent method
// and no body (a proxy sends none when the request has none).
func Repeatable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}
