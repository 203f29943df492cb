package config

import (
	"regexp"
	"slices"
	"strings"
)

// Process is one of an environment's processes (runtime.local.processes).
type Process struct {
	// Run is the shell command that starts it, in the checkout, with the
	// environment's variables. Every process gets a free port of its own
	// as $PORT (and HOST=127.0.0.1); only the http one is reached through
	// previewd's proxy. Required.
	Run string `yaml:"run"`
	// HTTP marks the one process that must listen on $HOST:$PORT: it is
	// health-checked and routed. Exactly one process is http.
	HTTP bool `yaml:"http"`
	// HealthPath, for the http process, is polled until it answers 2xx.
	// Default /healthz.
	HealthPath string `yaml:"healthPath"`
}

// NamedProcess is a Process with its name.
type NamedProcess struct {
	Name string
	Process
}

// DefaultProcess is the name of the one process runtime.local.run
// starts.
const DefaultProcess = "web"

// processName is what a process may be called: a DNS label of at most 32
// characters (it tags the process's log lines and names it in status).
var processName = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`)

// AppProcesses returns the environment's processes: the http one first,
// then the others by name. Without runtime.local.processes it is one,
// "web", running runtime.local.run and health-checked at
// runtime.local.healthPath.
func (l Local) AppProcesses() []NamedProcess {
	if len(l.Processes) == 0 {
		return []NamedProcess{{Name: DefaultProcess, Process: Process{Run: l.Run, HTTP: true, HealthPath: l.HealthPath}}}
	}
	out := make([]NamedProcess, 0, len(l.Processes))
	for name, p := range l.Processes {
		out = append(out, NamedProcess{Name: name, Process: p})
	}
	slices.SortFunc(out, func(a, b NamedProcess) int {
		switch {
		case a.HTTP && !b.HTTP:
			return -1
		case b.HTTP && !a.HTTP:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// HTTPProcess returns the process that is routed: the first of
// AppProcesses once the config is valid.
func (l Local) HTTPProcess() NamedProcess { return l.AppProcesses()[0] }

// setProcessDefaults fills in run and healthPath: the shorthand's when
// there are no processes, each http process's otherwise.
func (l *Local) setProcessDefaults() {
	if len(l.Processes) == 0 {
		if l.Run == "" {
			l.Run = "./app"
		}
		if l.HealthPath == "" {
			l.HealthPath = "/healthz"
		}
		return
	}
	for name, p := range l.Processes {
		if p.HTTP && p.HealthPath == "" {
			p.HealthPath = "/healthz"
			l.Processes[name] = p
		}
	}
}

// validateProcesses checks run and healthPath, or processes.
func (l Local) validateProcesses(bad func(string, string, ...any)) {
	if len(l.Processes) == 0 {
		if strings.TrimSpace(l.Run) == "" {
			bad("runtime.local.run", "required: the command that starts the app")
		}
		if !strings.HasPrefix(l.HealthPath, "/") {
			bad("runtime.local.healthPath", "%q must start with /", l.HealthPath)
		}
		return
	}
	if l.Run != "" {
		bad("runtime.local.run", "not with runtime.local.processes: give each command as processes.<name>.run")
	}
	if l.HealthPath != "" {
		bad("runtime.local.healthPath", "not with runtime.local.processes: give it as the http process's healthPath")
	}
	var http []string
	for _, np := range l.AppProcesses() {
		field := "runtime.local.processes." + np.Name
		if !processName.MatchString(np.Name) {
			bad(field, "%q is not a valid process name; want a DNS label of at most 32 characters: [a-z]([a-z0-9-]*[a-z0-9])?", np.Name)
		}
		if strings.TrimSpace(np.Run) == "" {
			bad(field+".run", "required: the command that starts the process")
		}
		if np.HTTP {
			http = append(http, np.Name)
			if !strings.HasPrefix(np.HealthPath, "/") {
				bad(field+".healthPath", "%q must start with /", np.HealthPath)
			}
		} else if np.HealthPath != "" {
			bad(field+".healthPath", "only the http process is health-checked")
		}
	}
	switch len(http) {
	case 0:
		bad("runtime.local.processes", "no process is http: mark the one that serves $PORT with http: true")
	case 1:
	default:
		bad("runtime.local.processes", "%s are all http: exactly one process is routed", strings.Join(http, ", "))
	}
}
