package config

import (
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/previewd/previewd/internal/env"
)

// Lifecycle keeps previews from running when nobody uses them: they
// sleep when idle, are removed when unused for long, and wait their turn
// beyond a cap. Activity is a push, a request through previewd's proxy or
// a command (API, dashboard, PR comment). Production is never subject to
// it. Every rule is off until set.
type Lifecycle struct {
	// SleepAfter puts a preview with no activity for this long to sleep:
	// its processes stop (on Kubernetes its Deployments scale to 0), its
	// database and work dir stay, and the next request through previewd's
	// proxy wakes it. A duration ("30m") or days and weeks ("3d", "2w").
	// Default 0: previews never sleep.
	SleepAfter Period `yaml:"sleepAfter"`
	// WakeTimeout is how long a request waits for a sleeping preview to
	// be ready. Default 60s.
	WakeTimeout Period `yaml:"wakeTimeout"`
	// TTL removes a preview with no activity for this long, completely,
	// as if its pull request had closed; a push or /preview up brings it
	// back. Default 0: previews never expire.
	TTL Period `yaml:"ttl"`
	// WarnBefore is how long before the TTL removes a preview the pull
	// request is told, and how to keep it. Shorter than ttl; 0 turns the
	// warning off. Default 12h, or half the ttl when that is shorter.
	WarnBefore Period `yaml:"warnBefore"`
	// MaxRunning caps the previews running at once (production never
	// counts, a sleeping preview holds no slot); the rest are queued,
	// first come, first served. Default 0: no cap.
	MaxRunning int `yaml:"maxRunning"`
	// Evict is what a new or woken preview does when maxRunning run:
	// none (wait in the queue) or idle (put the least recently active
	// running preview to sleep and take its slot). Default none.
	Evict string `yaml:"evict"`
	// KeepLabel, on a pull request, keeps its preview from sleeping or
	// expiring (as /preview keep does). Default preview:keep.
	KeepLabel string `yaml:"keepLabel"`
	// Cost prices what each preview used, for the cost line on the PR
	// comment, the dashboard and the API.
	Cost Cost `yaml:"cost"`
}

// Cost holds the rates of the cost line. Without rates the line says what
// was used and no price.
type Cost struct {
	// CPUHour is the price of one CPU busy for an hour. Default 0.
	CPUHour float64 `yaml:"cpuHour"`
	// GBHour is the price of one GB of memory held for an hour.
	// Default 0.
	GBHour float64 `yaml:"gbHour"`
	// Currency is the rates' three-letter code. Default USD.
	Currency string `yaml:"currency"`
}

// Period is a duration written as Go writes them ("90s", "30m",
// "1h30m") or as a whole number of days or weeks ("3d", "2w"). A value
// that does not parse is kept, and Validate names its field.
type Period struct {
	time.Duration
	// set is true when the file gave a value, even 0.
	set bool
	// bad is the text that did not parse, and err why.
	bad string
	err error
}

// UnmarshalYAML parses the duration, keeping a bad one for Validate.
func (p *Period) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	p.set = true
	d, err := env.ParseDuration(s)
	if err != nil {
		p.bad, p.err = s, err
		return nil
	}
	p.Duration = d
	return nil
}

// MarshalYAML writes the duration as a string.
func (p Period) MarshalYAML() (any, error) {
	if p.err != nil {
		return p.bad, nil
	}
	return p.String(), nil
}

// Defaults of the lifecycle section.
const (
	defaultWakeTimeout = 60 * time.Second
	defaultWarnBefore  = 12 * time.Hour
	defaultKeepLabel   = "preview:keep"
	defaultCurrency    = "USD"
)

func (l *Lifecycle) setDefaults() {
	if !l.WakeTimeout.set {
		l.WakeTimeout.Duration = defaultWakeTimeout
	}
	if !l.WarnBefore.set {
		l.WarnBefore.Duration = defaultWarnBefore
		if ttl := l.TTL.Duration; ttl > 0 && ttl/2 < defaultWarnBefore {
			l.WarnBefore.Duration = ttl / 2
		}
	}
	if l.Evict == "" {
		l.Evict = env.EvictNone
	}
	if l.KeepLabel == "" {
		l.KeepLabel = defaultKeepLabel
	}
	if l.Cost.Currency == "" {
		l.Cost.Currency = defaultCurrency
	}
}

var currencyCode = regexp.MustCompile(`^[A-Za-z]{3}$`)

// maxLabelLen is the longest label name GitHub accepts.
const maxLabelLen = 50

func (l *Lifecycle) validate(bad func(string, string, ...any)) {
	for _, f := range []struct {
		name string
		p    Period
	}{
		{"lifecycle.sleepAfter", l.SleepAfter},
		{"lifecycle.wakeTimeout", l.WakeTimeout},
		{"lifecycle.ttl", l.TTL},
		{"lifecycle.warnBefore", l.WarnBefore},
	} {
		if f.p.err != nil {
			bad(f.name, "%v", f.p.err)
		}
	}
	if l.WakeTimeout.err == nil && l.WakeTimeout.Duration <= 0 {
		bad("lifecycle.wakeTimeout", "must be positive: how long a request waits for a sleeping preview (default 60s)")
	}
	if ttl, warn := l.TTL.Duration, l.WarnBefore.Duration; ttl > 0 && warn >= ttl && l.TTL.err == nil && l.WarnBefore.err == nil {
		bad("lifecycle.warnBefore", "%s is not shorter than lifecycle.ttl (%s): the warning would come before any idle time; want less than the ttl, or 0 for no warning", env.HumanDuration(warn), env.HumanDuration(ttl))
	}
	if l.MaxRunning < 0 {
		bad("lifecycle.maxRunning", "%d is negative; want 0 (no cap) or more", l.MaxRunning)
	}
	switch l.Evict {
	case env.EvictNone:
	case env.EvictIdle:
		if l.MaxRunning == 0 {
			bad("lifecycle.evict", "idle needs lifecycle.maxRunning: without a cap nothing is evicted")
		}
	default:
		bad("lifecycle.evict", "unknown value %q; want none or idle", l.Evict)
	}
	if len(l.KeepLabel) > maxLabelLen {
		bad("lifecycle.keepLabel", "%d characters; GitHub labels have at most %d", len(l.KeepLabel), maxLabelLen)
	}
	if l.Cost.CPUHour < 0 {
		bad("lifecycle.cost.cpuHour", "%v is negative", l.Cost.CPUHour)
	}
	if l.Cost.GBHour < 0 {
		bad("lifecycle.cost.gbHour", "%v is negative", l.Cost.GBHour)
	}
	if !currencyCode.MatchString(l.Cost.Currency) {
		bad("lifecycle.cost.currency", "%q is not a currency code; want three letters such as USD or EUR", l.Cost.Currency)
	}
}

// Policy returns the lifecycle policy the reconciler applies.
func (l Lifecycle) Policy() env.Lifecycle {
	return env.Lifecycle{
		SleepAfter:  l.SleepAfter.Duration,
		WakeTimeout: l.WakeTimeout.Duration,
		TTL:         l.TTL.Duration,
		WarnBefore:  l.WarnBefore.Duration,
		MaxRunning:  l.MaxRunning,
		Evict:       l.Evict,
		KeepLabel:   l.KeepLabel,
		Rates:       env.Rates{CPUHour: l.Cost.CPUHour, GBHour: l.Cost.GBHour, Currency: l.Cost.Currency},
	}
}

// String says the period as it was written when it did not parse.
func (p Period) String() string {
	if p.err != nil {
		return p.bad
	}
	return p.Duration.String()
}
