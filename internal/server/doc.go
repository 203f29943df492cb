// Package server is previewd's HTTP face on the listen address: the JSON
// API, the dashboard, health and metrics endpoints, and the preview proxy
// that sends <key>.<domain> to that environment.
package server
