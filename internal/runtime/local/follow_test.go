package local

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
)

// follow runs r.Follow in the background and returns its lines and its
// result.
func follow(t *testing.T, r *Runtime, key string, n int) (context.CancelFunc, <-chan env.LogLine, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan env.LogLine, 64)
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		done <- r.Follow(ctx, key, n, lines)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return cancel, lines, done
}

// next returns the next line that is not a header line, failing after
// a deadline.
func next(t *testing.T, lines <-chan env.LogLine, done <-chan error) env.LogLine {
	t.Helper()
	for {
		select {
		case l := <-lines:
			if _, ok := headerStep(l.Text); !ok {
				return l
			}
		case err := <-done:
			t.Fatalf("the follow ended (%v) while a line was awaited", err)
		case <-time.After(20 * time.Second):
			t.Fatal("no line within 20s")
		}
	}
}

func wantLine(t *testing.T, got env.LogLine, step, text string) {
	t.Helper()
	if got.Step != step || got.Text != text {
		t.Fatalf("line %q (step %q), want %q (step %q)", got.Text, got.Step, text, step)
	}
}

// TestFollow: following a real environment shows its build, migrate and
// run output, each line tagged with its step, then what the app writes
// later; a line that is not UTF-8 or is 10 MB long is shown safely; the
// follow ends when the environment is torn down.
func TestFollow(t *testing.T) {
	f := newFixture(t, Options{
		Build:   `echo building the widget; printf 'caf\351\n'`,
		Migrate: "echo migrating",
	}, 1)
	r, ctx := f.r, context.Background()
	if _, _, done := follow(t, r, "feat", 10); errors.Is(<-done, runtime.ErrNoLogs) == false {
		t.Fatal("following an environment that wrote nothing: want ErrNoLogs")
	}
	rel := f.release(f.shas[0])
	for _, step := range []func(context.Context, *env.Release) error{r.Prepare, r.Migrate, r.Deploy} {
		if err := step(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}
	_, lines, done := follow(t, r, "feat", 100)
	var steps []string
	for {
		l := <-lines
		if s, ok := headerStep(l.Text); ok {
			if l.Step != s {
				t.Errorf("header %q tagged %q", l.Text, l.Step)
			}
			steps = append(steps, s)
			if s == "run" {
				break
			}
			continue
		}
		switch l.Text {
		case "building the widget", "caf\uFFFD":
			if l.Step != "build" {
				t.Errorf("%q tagged %q, want build", l.Text, l.Step)
			}
		case "migrating":
			if l.Step != "migrate" {
				t.Errorf("%q tagged %q, want migrate", l.Text, l.Step)
			}
		default:
			t.Errorf("unexpected line %q (step %q)", l.Text, l.Step)
		}
	}
	if fmt.Sprint(steps) != "[build migrate run]" {
		t.Errorf("header lines of steps %v, want build, migrate, run", steps)
	}

	print := func(body string) {
		t.Helper()
		resp, err := http.Post(f.srv.URL+"/print", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("print: %s", resp.Status)
		}
	}
	print("written later\n")
	wantLine(t, next(t, lines, done), "run", "written later")
	print("\xff\xfe not utf-8\n" + strings.Repeat("y", 10<<20) + "\nafter the long one\n")
	wantLine(t, next(t, lines, done), "run", "\uFFFD not utf-8")
	long := next(t, lines, done)
	if long.Step != "run" || len(long.Text) > env.MaxLogLine || !strings.HasSuffix(long.Text, "…") || !strings.HasPrefix(long.Text, "yyyy") || !utf8.ValidString(long.Text) {
		t.Errorf("the 10 MB line: %d bytes, step %q, ending %q", len(long.Text), long.Step, long.Text[max(0, len(long.Text)-8):])
	}
	wantLine(t, next(t, lines, done), "run", "after the long one")

	items, err := f.st.Items(ctx, "feat")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "feat", items); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case l := <-lines:
			t.Logf("line after teardown: %q", l.Text)
			continue
		case err := <-done:
			if err != nil {
				t.Errorf("the follow ended with %v after the teardown, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the follow did not end within 20s of the teardown")
		}
		break
	}
}

// TestFollowFile: the follow of a log file that is cut shorter reads it
// again from the start; one replaced by another file ends; lines of a
// step started while following are tagged with it.
func TestFollowFile(t *testing.T) {
	r, _ := newRuntime(t, Options{})
	key := "feat"
	path := r.logPath(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write("==> build abcdef0 at 2026-01-02T03:04:05Z: make\none\ntwo\n")
	_, lines, done := follow(t, r, key, 1)
	wantLine(t, next(t, lines, done), "build", "two")
	write("thr")
	write("ee\n==> run abcdef0 on port 4000 at 2026-01-02T03:04:06Z: ./app\nlistening\n")
	wantLine(t, next(t, lines, done), "build", "three")
	wantLine(t, next(t, lines, done), "run", "listening")

	// Cut to nothing, then written again (a log rotated by copytruncate).
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	// Until the follower has seen the file shorter, what is written
	// could be taken for growth past its old size: write less than it
	// was, so the cut is always seen.
	write("==> migrate abcdef0 at 2026-01-02T03:04:07Z: m\nfresh\n")
	wantLine(t, next(t, lines, done), "migrate", "fresh")

	// Replaced: a new file at the path is another log; the follow ends.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow of a replaced log: %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the follow of a replaced log did not end")
	}
}

func TestTailStart(t *testing.T) {
	h := func(step string) string { return "==> " + step + " abcdef0 at 2026-01-02T03:04:05Z: cmd\n" }
	long := strings.Repeat("x", 100<<10) + "\n" // longer than a chunk
	for name, tc := range map[string]struct {
		log      string
		n        int
		wantRest string // the log from the offset on
		wantStep string
	}{
		"empty":                     {"", 10, "", defaultStep},
		"fewer lines than n":        {h("build") + "a\n", 10, h("build") + "a\n", defaultStep},
		"last n":                    {h("build") + "a\nb\nc\n", 2, "b\nc\n", "build"},
		"latest header before":      {h("build") + "a\n" + h("migrate") + "m\n" + h("run") + "r1\nr2\n", 1, "r2\n", "run"},
		"header itself in the tail": {h("build") + "a\n" + h("migrate") + "m\n", 2, h("migrate") + "m\n", "build"},
		"partial last line counts":  {h("run") + "a\nb\npart", 2, "b\npart", "run"},
		"n 0: the end":              {h("run") + "a\n", 0, "", "run"},
		"n 0: the partial line":     {h("run") + "a\npart", 0, "part", "run"},
		"no header":                 {"a\nb\n", 1, "b\n", defaultStep},
		"header across chunks":      {long + h("migrate") + long + long + "z\n", 1, "z\n", "migrate"},
		"app line like a header":    {h("build") + "==> run of the mill\nz\n", 1, "z\n", "build"},
		"header at the start":       {h("migrate") + long + "z\n", 1, "z\n", "migrate"},
	} {
		t.Run(name, func(t *testing.T) {
			rd := strings.NewReader(tc.log)
			off, step, err := tailStart(rd, int64(len(tc.log)), tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if rest := tc.log[off:]; rest != tc.wantRest || step != tc.wantStep {
				t.Errorf("from %d: %.60q step %q; want %.60q step %q", off, rest, step, tc.wantRest, tc.wantStep)
			}
		})
	}
}

func TestHeaderStep(t *testing.T) {
	for line, want := range map[string]string{
		"==> build 1a2b3c4 at 2026-01-02T03:04:05Z: go build -o app .":   "build",
		"==> migrate 1a2b3c4 at 2026-01-02T03:04:05Z: ./app migrate":     "migrate",
		"==> run 1a2b3c4 on port 41234 at 2026-01-02T03:04:05Z: ./app":   "run",
		"==> run  at 2026-01-02T03:04:05Z: ./app":                        "run", // no SHA
		"==> cache node_modules 1a2b3c4 at 2026-01-02T03:04:05Z: npm ci": "cache node_modules",
		"==> deploy 1a2b3c4 at 2026-01-02T03:04:05Z: x":                  "",
		"==> build started":                             "",
		" ==> build 1a2b3c4 at 2026-01-02T03:04:05Z: x": "",
		"==> /var/log/syslog <==":                       "",
		"==> build 1a2b3c4 at 2026-01-02 03:04:05: go build (not previewd's own)": "",
	} {
		got, ok := headerStep(line)
		if got != want || ok != (want != "") {
			t.Errorf("headerStep(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}
