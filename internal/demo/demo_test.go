package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `previewd demo` as a user would: it builds the example app
// from the throwaway repository for production and both feature branches,
// serves each with its own banner, and removes everything on Ctrl-C.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example app three times")
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Listen: "127.0.0.1:0", Out: pw})
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var dir, dash string
	urls := map[string]string{}
	deadline := time.AfterFunc(5*time.Minute, func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
	defer deadline.Stop()
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		switch {
		case strings.HasPrefix(line, "previewd demo: making"):
			dir = line[strings.LastIndex(line, " ")+1:]
		case strings.HasPrefix(line, "dashboard: "):
			dash = strings.TrimPrefix(line, "dashboard: ")
		case strings.HasPrefix(line, "  ready"):
			f := strings.Fields(line)
			urls[f[1]] = f[2]
		case strings.HasPrefix(line, "  FAILED"):
			t.Fatalf("an environment failed: %s", line)
		}
		if strings.HasPrefix(line, "All ") {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if len(urls) != 3 || dir == "" || dash == "" {
		t.Fatalf("demo printed dir %q, dashboard %q, urls %v", dir, dash, urls)
	}
	want := map[string]string{"production": "", "add-banner": Branches["add-banner"], "holiday-sale": Branches["holiday-sale"]}
	for key, banner := range want {
		req, _ := http.NewRequest("GET", dash+"healthz", nil)
		req.Host = strings.TrimPrefix(strings.TrimPrefix(urls[key], "http://"), "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var h struct{ Banner, Key string }
		json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if h.Key != key || h.Banner != banner {
			t.Errorf("%s serves key %q banner %q, want %q", key, h.Key, h.Banner, banner)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo left %s behind: %v", dir, err)
	}
}
