// Package server is previewd's HTTP face on the listen address: the JSON
// API, the dashboard (server-rendered pages that the embedded
// static/dashboard.js keeps live from the event stream), health and
// metrics endpoints, and the preview proxy that sends <key>.<domain> to
// that environment, behind the preview protection (previews.access: the
// password page, the sign-in ticket exchange under /.previewd/ on the
// preview's host) and the forward-auth endpoint GET /auth/preview that
// ingress-nginx's auth-url calls.
package server
