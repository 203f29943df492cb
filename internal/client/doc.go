// Package client is previewd's HTTP API client, for the CLI and the demo:
// the environments (list, get, logs), the actions on them (redeploy,
// sleep, wake, extend, down, up) and the two event streams (the changes of
// GET /api/v1/events and the log lines of logs?follow=true), read as
// Server-Sent Events with the framing env.Change's doc comment gives.
//
// The token travels only in the Authorization header. An answer that is
// not a success is an *Error carrying the server's message and status;
// an unknown environment is a *NotFoundError.
package client
