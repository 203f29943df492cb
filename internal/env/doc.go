// Package env holds the pure types every other package shares: an
// environment, its status and inventory, and the rules that turn branch
// names and pull request numbers into keys. It does no I/O.
package env
