package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/previewd/previewd/internal/client"
	"github.com/previewd/previewd/internal/config"
)

// The environment variables the commands against a running previewd read.
const (
	EnvServer = "PREVIEWD_SERVER"
	EnvToken  = "PREVIEWD_TOKEN"
)

// defaultServer is where previewd listens by default.
const defaultServer = "http://127.0.0.1:8080"

// remote is what every command against a running previewd takes: where
// it is, the token, and how to print.
type remote struct {
	server, token, config, output string
}

// addRemote adds the flags of a command against a running previewd;
// output says whether it prints tables or JSON (-o).
func addRemote(cmd *cobra.Command, output bool) *remote {
	r := &remote{}
	f := cmd.Flags()
	f.StringVar(&r.server, "server", "", "previewd's address (default: --config's listen, else $"+EnvServer+", else "+defaultServer+")")
	f.StringVar(&r.token, "token", "", "bearer token (default $"+EnvToken+"; prefer the variable: a flag shows in the process list)")
	f.StringVarP(&r.config, "config", "c", "", "config file to take previewd's address from (its listen)")
	if output {
		f.StringVarP(&r.output, "output", "o", "table", "output format: table or json")
	}
	return r
}

// json reports whether the command prints JSON; a bad -o is a usage error.
func (r *remote) json() (bool, error) {
	switch r.output {
	case "", "table":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usage(fmt.Errorf("-o: unknown value %q; want table or json", r.output))
}

// client returns a client of the previewd the flags and the environment
// name, warning on stderr when the token came on the command line.
func (r *remote) client(cmd *cobra.Command) (*client.Client, error) {
	if _, err := r.json(); err != nil {
		return nil, err
	}
	server, err := r.address(cmd)
	if err != nil {
		return nil, err
	}
	token := os.Getenv(EnvToken)
	if cmd.Flags().Changed("token") {
		token = r.token
		fmt.Fprintln(cmd.ErrOrStderr(), "previewd: warning: --token is visible to other users of this machine (ps); set "+EnvToken+" instead")
	}
	return client.New(server, strings.TrimSpace(token)), nil
}

// address is previewd's base URL: --server, else --config's listen, else
// $PREVIEWD_SERVER, else the default.
func (r *remote) address(cmd *cobra.Command) (string, error) {
	s := r.server
	switch {
	case s != "":
	case r.config != "":
		cfg, err := config.Load(r.config)
		if err != nil {
			return "", configError(cmd, err)
		}
		s = listenURL(cfg.Listen)
	case os.Getenv(EnvServer) != "":
		s = os.Getenv(EnvServer)
	default:
		s = defaultServer
	}
	return serverURL(s)
}

// listenURL is the URL a client reaches a listen address at: an
// unspecified host (":8080", "0.0.0.0:8080", "[::]:8080") is this machine.
func listenURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// serverURL checks a server address; one without a scheme is http.
func serverURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return "", usage(fmt.Errorf("--server: %q is not a URL such as http://127.0.0.1:8080", s))
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// usage marks err as a usage error (exit 2).
func usage(err error) error { return &exitError{code: 2, err: err} }

// isTerminal reports whether w is a terminal, and its width.
func isTerminal(w io.Writer) (bool, int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		width = 80
	}
	return true, width
}

// printJSON prints v indented, as the API does.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// keyArgs takes exactly the one KEY argument (n more after it).
func keyArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1+n {
			return fmt.Errorf("want %s, got %d arguments", strings.TrimPrefix(cmd.Use, cmd.Name()+" "), len(args))
		}
		return nil
	}
}

// completeKeys completes the first argument with the live environments'
// keys, asked of previewd (at most 3 s).
func completeKeys(r *remote) func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		server, err := r.address(cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		token := os.Getenv(EnvToken)
		if r.token != "" {
			token = r.token
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
		defer cancel()
		l, err := client.New(server, token).List(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var keys []cobra.Completion
		for _, e := range l.Environments {
			if strings.HasPrefix(e.Key, toComplete) {
				keys = append(keys, cobra.CompletionWithDesc(e.Key, string(e.Status)))
			}
		}
		return keys, cobra.ShellCompDirectiveNoFileComp
	}
}

// errNotFound turns a 404 about key into "no environment KEY" (the
// client's *NotFoundError says just that).
func errNotFound(err error) bool {
	var nf *client.NotFoundError
	return errors.As(err, &nf)
}
