// Package config defines previewd's configuration file: its types (whose
// doc comments are the reference), defaults, ${VAR} expansion and
// validation. Unknown keys are errors.
package config
