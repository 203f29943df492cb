package local

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestMain doubles as the app the drain tests run: the test binary started
// with LOCAL_TEST_APP=1 (given through Options.Env) serves on $PORT.
func TestMain(m *testing.M) {
	if os.Getenv("LOCAL_TEST_APP") == "1" {
		serveTestApp()
		return
	}
	os.Exit(m.Run())
}

// serveTestApp listens on $HOST:$PORT (127.0.0.1 without HOST) and
// answers /healthz with its SHA and pid, /slow?file=F once F exists (it
// writes F.started when the request arrives), GET /db with the content of
// $DATABASE_PATH, POST /echo with the request's body, and writes the
// body of POST /print to its output. On SIGTERM it
// exits at once, as a plain Go server does.
func serveTestApp() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %d", os.Getenv("PREVIEW_SHA"), os.Getpid())
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		f := r.URL.Query().Get("file")
		if err := os.WriteFile(f+".started", nil, 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for {
			if _, err := os.Stat(f); err == nil {
				break
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		fmt.Fprintf(w, "%d", os.Getpid())
	})
	mux.HandleFunc("GET /db", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(os.Getenv("DATABASE_PATH"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("POST /print", func(w http.ResponseWriter, r *http.Request) {
		// The body, as it is, to the app's output (its log).
		if _, err := io.Copy(os.Stdout, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(w, r.Body); err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
		}
	})
	// An IPv4 host gets an IPv4 socket: Go would listen on 0.0.0.0 with
	// a dual-stack [::] one.
	host, network := cmp.Or(os.Getenv("HOST"), "127.0.0.1"), "tcp"
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		network = "tcp4"
	}
	ln, err := net.Listen(network, net.JoinHostPort(host, os.Getenv("PORT")))
	if err == nil {
		err = http.Serve(ln, mux)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
