// Package git runs the git command for the parts that need it: listing a
// repository's branches (forge/git), and fetching commits into a bare object
// cache and extracting one commit's tree (runtime/local), or reading one
// directory of a commit into memory (runtime/kube's manifests).
//
// git always runs with an argument list, never through a shell; URLs and
// refs always follow "--" so none can be read as an option; SHAs are
// checked to be hex before they reach git. Credentials are passed as
// environment variables (GIT_CONFIG_* settings), never as arguments. git
// never prompts, and a git whose context ends is killed and not waited on
// for longer than a moment, even when its helpers hold its output open.
package git
