package env

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The statuses of the lifecycle (config lifecycle): a preview past
// sleepAfter sleeps, one over maxRunning waits its turn.
const (
	// StatusQueued: the preview waits for a running slot (maxRunning).
	StatusQueued Status = "queued"
	// StatusSleeping: nothing runs; data and build are kept, and the next
	// request through previewd's proxy (or a wake) starts it again.
	StatusSleeping Status = "sleeping"
)

// Evict policies: what a new preview does when maxRunning are running.
const (
	EvictNone = "none" // wait in the queue
	EvictIdle = "idle" // put the least recently active running preview to sleep
)

// Lifecycle is the policy that keeps previews from running when nobody
// uses them (config lifecycle). Zero durations and a zero cap turn each
// rule off. Production is never subject to it.
type Lifecycle struct {
	// SleepAfter puts a preview with no activity for this long to sleep.
	SleepAfter time.Duration
	// WakeTimeout bounds how long a request waits for a sleeping
	// preview to be ready.
	WakeTimeout time.Duration
	// TTL removes a preview with no activity for this long, as if its
	// change had closed; WarnBefore says so on the PR this long ahead.
	TTL, WarnBefore time.Duration
	// MaxRunning caps the previews running at once; the rest queue.
	MaxRunning int
	// Evict is EvictNone or EvictIdle.
	Evict string
	// KeepLabel, on a pull request, keeps its preview from sleeping or
	// expiring.
	KeepLabel string
	// Rates price the cost line.
	Rates Rates
}

// Rates are what a CPU-hour and a GB-hour of memory cost.
type Rates struct {
	CPUHour  float64
	GBHour   float64
	Currency string
}

// Set reports whether any rate is set.
func (r Rates) Set() bool { return r.CPUHour > 0 || r.GBHour > 0 }

// Usage is what an environment has used while it ran, since Since (its
// creation, or its revival after it expired).
type Usage struct {
	RunSeconds float64 `json:"runSeconds"`
	CPUSeconds float64 `json:"cpuSeconds"`
	// GBSeconds is memory over time: resident (or requested) GB times
	// the seconds it was held.
	GBSeconds       float64   `json:"gbSeconds"`
	PeakMemoryBytes int64     `json:"peakMemoryBytes"`
	Since           time.Time `json:"since"`
	// Cost and Currency are set when rates are.
	Cost     float64 `json:"cost,omitempty"`
	Currency string  `json:"currency,omitempty"`
}

// Priced returns u with its cost at rates r (unchanged when none are set).
func (u Usage) Priced(r Rates) Usage {
	if !r.Set() {
		return u
	}
	u.Cost = u.CPUSeconds/3600*r.CPUHour + u.GBSeconds/3600*r.GBHour
	u.Currency = r.Currency
	if u.Currency == "" {
		u.Currency = "USD"
	}
	return u
}

// Line says u for people: "ran 3 h 20 m, 0.40 CPU-h, peak 180 MB; about
// $0.02". Empty when it never ran.
func (u Usage) Line() string {
	if u.RunSeconds <= 0 {
		return ""
	}
	s := fmt.Sprintf("ran %s, %.2f CPU-h, peak %s", HumanDuration(time.Duration(u.RunSeconds*float64(time.Second))), u.CPUSeconds/3600, HumanBytes(u.PeakMemoryBytes))
	if u.Currency != "" {
		s += "; about " + money(u.Cost, u.Currency)
	}
	return s
}

func money(v float64, currency string) string {
	sym := map[string]string{"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}[strings.ToUpper(currency)]
	n := strconv.FormatFloat(math.Round(v*100)/100, 'f', 2, 64)
	if sym == "" {
		return n + " " + currency
	}
	return sym + n
}

// HumanDuration says d as "3 h 20 m", "12 m", "40 s" or "2 d 4 h".
func HumanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d m", int(d.Minutes()))
	case d < 24*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) % 60; m > 0 {
			return fmt.Sprintf("%d h %d m", h, m)
		}
		return fmt.Sprintf("%d h", h)
	}
	days := int(d.Hours()) / 24
	if h := int(d.Hours()) % 24; h > 0 {
		return fmt.Sprintf("%d d %d h", days, h)
	}
	return fmt.Sprintf("%d d", days)
}

// HumanBytes says n as "180 MB" (decimal units).
func HumanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%d MB", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%d kB", n/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// ParseDuration parses a Go duration ("90m", "1h30m") or a whole number
// of days or weeks ("3d", "2w"), as people write them in config and in
// /preview extend. It refuses negative durations.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if n := len(s) - 1; s[n] == 'd' || s[n] == 'w' {
		v, err := strconv.Atoi(s[:n])
		if err != nil || v < 0 || v > 3650 {
			return 0, fmt.Errorf("%q is not a duration (want e.g. 30m, 12h, 3d, 2w)", s)
		}
		d := time.Duration(v) * 24 * time.Hour
		if s[n] == 'w' {
			d *= 7
		}
		return d, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 30m, 12h, 3d, 2w)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// ShortDuration says d coarsely for a table column: "40s", "12m", "5h"
// (up to two days), "3d".
func ShortDuration(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
