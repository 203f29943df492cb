// Package command parses the /preview commands people write in pull
// request comments. It is pure: it reads text and returns what was asked,
// and knows nothing of GitHub, permissions or environments.
package command
