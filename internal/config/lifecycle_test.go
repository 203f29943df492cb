package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/previewd/previewd/internal/env"
)

// TestLifecycleDefaults: without a lifecycle section every rule is off,
// with the documented defaults for the rest.
func TestLifecycleDefaults(t *testing.T) {
	c, err := Parse([]byte("forge: {git: {url: x}}\n"), "/x", lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := env.Lifecycle{
		WakeTimeout: 60 * time.Second, WarnBefore: 12 * time.Hour, Evict: env.EvictNone,
		KeepLabel: "preview:keep", Rates: env.Rates{Currency: "USD"},
	}
	if got := c.Lifecycle.Policy(); got != want {
		t.Errorf("default policy = %+v\nwant %+v", got, want)
	}
}

// TestLifecyclePolicy: what the file says is what the reconciler gets;
// days and weeks are durations, and a ttl of a day or less halves the
// default warning.
func TestLifecyclePolicy(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want env.Lifecycle
	}{
		"the issue's example": {
			yaml: "{sleepAfter: 30m, wakeTimeout: 60s, ttl: 72h, warnBefore: 12h, maxRunning: 10, evict: none, keepLabel: 'preview:keep', cost: {cpuHour: 0.04, gbHour: 0.005, currency: EUR}}",
			want: env.Lifecycle{SleepAfter: 30 * time.Minute, WakeTimeout: time.Minute, TTL: 72 * time.Hour, WarnBefore: 12 * time.Hour, MaxRunning: 10, Evict: "none", KeepLabel: "preview:keep", Rates: env.Rates{CPUHour: 0.04, GBHour: 0.005, Currency: "EUR"}},
		},
		"days and weeks": {
			yaml: "{sleepAfter: 1d, ttl: 2w, warnBefore: 3d, maxRunning: 3, evict: idle, keepLabel: pinned}",
			want: env.Lifecycle{SleepAfter: 24 * time.Hour, WakeTimeout: time.Minute, TTL: 14 * 24 * time.Hour, WarnBefore: 72 * time.Hour, MaxRunning: 3, Evict: "idle", KeepLabel: "pinned", Rates: env.Rates{Currency: "USD"}},
		},
		"short ttl halves the default warning": {
			yaml: "{ttl: 6h}",
			want: env.Lifecycle{WakeTimeout: time.Minute, TTL: 6 * time.Hour, WarnBefore: 3 * time.Hour, Evict: "none", KeepLabel: "preview:keep", Rates: env.Rates{Currency: "USD"}},
		},
		"warning off": {
			yaml: "{ttl: 6h, warnBefore: 0}",
			want: env.Lifecycle{WakeTimeout: time.Minute, TTL: 6 * time.Hour, Evict: "none", KeepLabel: "preview:keep", Rates: env.Rates{Currency: "USD"}},
		},
		"zeros written as numbers": {
			yaml: "{sleepAfter: 0, ttl: 0, maxRunning: 0}",
			want: env.Lifecycle{WakeTimeout: time.Minute, WarnBefore: 12 * time.Hour, Evict: "none", KeepLabel: "preview:keep", Rates: env.Rates{Currency: "USD"}},
		},
		"ttl shorter than sleepAfter is fine": {
			yaml: "{sleepAfter: 2h, ttl: 1h, warnBefore: 10m}",
			want: env.Lifecycle{SleepAfter: 2 * time.Hour, WakeTimeout: time.Minute, TTL: time.Hour, WarnBefore: 10 * time.Minute, Evict: "none", KeepLabel: "preview:keep", Rates: env.Rates{Currency: "USD"}},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Parse([]byte("forge: {git: {url: x}}\nlifecycle: "+tt.yaml+"\n"), "/x", lookup(nil))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Lifecycle.Policy(); got != tt.want {
				t.Errorf("policy = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestLifecycleValidate: each bad value is named by its field, with what
// is wanted; all of them are reported at once.
func TestLifecycleValidate(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want []string
	}{
		"bad duration":        {"{sleepAfter: soon}", []string{`lifecycle.sleepAfter: "soon" is not a duration (want e.g. 30m, 12h, 3d, 2w)`}},
		"bad days":            {"{ttl: 3.5d}", []string{`lifecycle.ttl: "3.5d" is not a duration`}},
		"negative duration":   {"{ttl: -1h}", []string{`lifecycle.ttl: "-1h" is negative`}},
		"negative days":       {"{ttl: -3d}", []string{`lifecycle.ttl: "-3d" is not a duration`}},
		"zero wake timeout":   {"{wakeTimeout: 0s}", []string{"lifecycle.wakeTimeout: must be positive"}},
		"bad wake timeout":    {"{wakeTimeout: 1 minute}", []string{`lifecycle.wakeTimeout: "1 minute" is not a duration`}},
		"warning too early":   {"{ttl: 12h, warnBefore: 12h}", []string{"lifecycle.warnBefore: 12 h is not shorter than lifecycle.ttl (12 h)"}},
		"warning past ttl":    {"{ttl: 1d, warnBefore: 2d}", []string{"lifecycle.warnBefore: 2 d is not shorter than lifecycle.ttl (1 d)"}},
		"negative cap":        {"{maxRunning: -1}", []string{"lifecycle.maxRunning: -1 is negative"}},
		"unknown evict":       {"{maxRunning: 2, evict: oldest}", []string{`lifecycle.evict: unknown value "oldest"; want none or idle`}},
		"evict without cap":   {"{evict: idle}", []string{"lifecycle.evict: idle needs lifecycle.maxRunning"}},
		"negative rates":      {"{cost: {cpuHour: -0.1, gbHour: -1}}", []string{"lifecycle.cost.cpuHour: -0.1 is negative", "lifecycle.cost.gbHour: -1 is negative"}},
		"bad currency":        {"{cost: {currency: dollars}}", []string{`lifecycle.cost.currency: "dollars" is not a currency code`}},
		"long keep label":     {"{keepLabel: " + strings.Repeat("k", 51) + "}", []string{"lifecycle.keepLabel: 51 characters; GitHub labels have at most 50"}},
		"several at once":     {"{sleepAfter: x, ttl: y, maxRunning: -2}", []string{"lifecycle.sleepAfter:", "lifecycle.ttl:", "lifecycle.maxRunning:"}},
		"not a string at all": {"{ttl: [3d]}", nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("forge: {git: {url: x}}\nlifecycle: "+tt.yaml+"\n"), "/x", lookup(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.want == nil {
				return // a YAML type error, reported by the decoder
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors %q lack %q", err, w)
				}
			}
			if len(es) != len(tt.want) {
				t.Errorf("got %d errors, want %d: %v", len(es), len(tt.want), err)
			}
		})
	}
}

// TestPeriodRoundTrip: a parsed period writes back as a duration that
// parses to the same value.
func TestPeriodRoundTrip(t *testing.T) {
	var in struct {
		P Period `yaml:"p"`
	}
	if err := yaml.Unmarshal([]byte("p: 2w"), &in); err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		P Period `yaml:"p"`
	}
	if err := yaml.Unmarshal(out, &back); err != nil || back.P.Duration != 14*24*time.Hour {
		t.Errorf("round trip of 2w: %q -> %v, %v", out, back.P.Duration, err)
	}
}

// TestLifecycleArgoCD: Argo CD owns the workloads, so previews cannot
// sleep under runtime.kind argocd; the ttl and the cap still work there.
func TestLifecycleArgoCD(t *testing.T) {
	base := "forge: {git: {url: x}}\nruntime: {kind: argocd, kubernetes: {argocd: {token: t}}}\nlifecycle: "
	if _, err := Parse([]byte(base+"{ttl: 3d, maxRunning: 2}\n"), "/x", lookup(nil)); err != nil {
		t.Fatalf("ttl and cap under argocd: %v", err)
	}
	_, err := Parse([]byte(base+"{sleepAfter: 30m, maxRunning: 2, evict: idle}\n"), "/x", lookup(nil))
	for _, w := range []string{"lifecycle.sleepAfter: not with runtime.kind argocd", "lifecycle.evict: idle is not possible with runtime.kind argocd"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("errors %v lack %q", err, w)
		}
	}
}
