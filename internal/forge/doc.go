// Package forge holds what the forges share. Each forge reports the
// changes that should have environments (env.Source values): forge/git
// lists a repository's branches, forge/github lists open pull requests.
package forge
