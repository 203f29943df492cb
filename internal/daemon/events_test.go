package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/env"
)

// TestEventsWiring: the reconciler's changes reach GET /api/v1/events
// (the hub is one of its notifiers), and stopping previewd ends the
// open streams at once rather than after Shutdown's whole wait.
func TestEventsWiring(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", repo},
		{"-C", repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	// The app fails to start: its steps are changes all the same.
	cfg, err := config.Parse([]byte("forge: {git: {url: "+repo+", pollInterval: 1h}}\ndatabase: {kind: none}\nruntime: {local: {run: 'exit 3', startTimeout: 5s}}\n"), dir,
		func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(dir, "data")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler), Listener: ln, StopOnExit: true})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx) }()
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", "http://"+ln.Addr().String()+"/api/v1/events?lastEventId=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/events: %s", resp.Status)
	}
	// lastEventId=1 is of no run of this hub: reset first, then the
	// production environment's steps until it fails.
	br := bufio.NewReader(resp.Body)
	var seen, kinds []string
	for !strings.HasSuffix(strings.Join(seen, " "), string(env.StatusFailed)) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream after %v: %v", seen, err)
		}
		if kind, ok := strings.CutPrefix(strings.TrimSpace(line), "event: "); ok {
			kinds = append(kinds, kind)
		}
		if data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok && data != "{}" {
			var c env.Change
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatal(err)
			}
			if c.Key != env.ProductionKey {
				t.Errorf("change of %q", c.Key)
			}
			seen = append(seen, string(c.Status))
		}
	}
	if kinds[0] != "reset" {
		t.Errorf("events %v, want a reset first", kinds)
	}
	stopped := time.Now()
	cancel()
	if _, err := io.Copy(io.Discard, br); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Logf("stream ended with %v", err)
	}
	if took := time.Since(stopped); took > 3*time.Second {
		t.Errorf("the stream ended %v after the stop; Shutdown waits 5 s for streams it does not end", took)
	}
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	t.Logf("steps seen: %v", seen)
}
