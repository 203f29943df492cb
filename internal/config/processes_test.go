package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestProcesses: run is the shorthand for one http process "web";
// processes list the http one first, then the others by name, with the
// http one's healthPath defaulted; bad processes name the field.
func TestProcesses(t *testing.T) {
	c, err := Parse([]byte("forge: {git: {url: x}}\nruntime: {local: {run: ./srv, healthPath: /up}}\n"), "/x", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []NamedProcess{{Name: "web", Process: Process{Run: "./srv", HTTP: true, HealthPath: "/up"}}}
	if got := c.Runtime.Local.AppProcesses(); !reflect.DeepEqual(got, want) {
		t.Errorf("shorthand: %+v, want %+v", got, want)
	}
	c, err = Parse([]byte(`forge: {git: {url: x}}
runtime:
  local:
    stopAppsOnExit: true
    processes:
      worker: {run: "node worker.js"}
      web: {run: "npm start -- -p $PORT", http: true}
      cron: {run: "node cron.js"}
`), "/x", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	want = []NamedProcess{
		{Name: "web", Process: Process{Run: "npm start -- -p $PORT", HTTP: true, HealthPath: "/healthz"}},
		{Name: "cron", Process: Process{Run: "node cron.js"}},
		{Name: "worker", Process: Process{Run: "node worker.js"}},
	}
	if got := c.Runtime.Local.AppProcesses(); !reflect.DeepEqual(got, want) {
		t.Errorf("processes: %+v, want %+v", got, want)
	}
	if !c.Runtime.Local.StopAppsOnExit || c.Runtime.Local.Run != "" {
		t.Errorf("local = %+v", c.Runtime.Local)
	}

	for name, tc := range map[string]struct{ processes, want string }{
		"no http":     {"{a: {run: x}, b: {run: y}}", "runtime.local.processes: no process is http"},
		"two http":    {"{a: {run: x, http: true}, b: {run: y, http: true}}", "runtime.local.processes: a, b are all http"},
		"no run":      {"{web: {run: x, http: true}, worker: {}}", "runtime.local.processes.worker.run: required"},
		"bad name":    {"{Web_1: {run: x, http: true}}", `runtime.local.processes.Web_1: "Web_1" is not a valid process name`},
		"long name":   {"{" + strings.Repeat("a", 33) + ": {run: x, http: true}}", "is not a valid process name"},
		"worker path": {"{web: {run: x, http: true}, w: {run: y, healthPath: /h}}", "runtime.local.processes.w.healthPath: only the http process"},
		"bad path":    {"{web: {run: x, http: true, healthPath: h}}", `runtime.local.processes.web.healthPath: "h" must start with /`},
		"with run":    {"{web: {run: x, http: true}}\n    run: ./app", "runtime.local.run: not with runtime.local.processes"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("forge: {git: {url: x}}\nruntime:\n  local:\n    processes: "+tc.processes+"\n"), "/x", os.LookupEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want %q", err, tc.want)
			}
		})
	}
}
