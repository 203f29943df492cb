package reconcile

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// The cap (lifecycle.maxRunning): at most MaxRunning previews hold a
// running slot; the others wait, first come first served, in status
// queued. Admit is the one decision, a pure function of what the store
// holds, so it is the same after a restart.

// SlotEntry is one live environment as the cap sees it.
type SlotEntry struct {
	Key        string
	Status     env.Status
	Production bool
	// QueuedAt orders the queue; Activity picks the one to evict.
	QueuedAt, Activity time.Time
	// Kept previews are never evicted.
	Kept bool
}

// holds reports whether e occupies a running slot: it is being deployed
// or runs. Production never counts; sleeping, queued, failed, pending
// (held) and removed environments hold none.
func (e SlotEntry) holds() bool {
	if e.Production {
		return false
	}
	switch e.Status {
	case env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusReady:
		return true
	}
	return false
}

// Admission is the cap's answer for one key.
type Admission struct {
	// Admitted: the key may run now.
	Admitted bool
	// Place and Of are its place in the queue (1-based) and the queue's
	// length, when not admitted.
	Place, Of int
	// Evict, with lifecycle.evict idle, names the running preview to put
	// to sleep to make room.
	Evict string
}

// Message says a for people: "queued: 2nd of 3 (maxRunning 10)".
func (a Admission) Message(max int) string {
	return "queued: " + ordinal(a.Place) + " of " + itoa(a.Of) + " (maxRunning " + itoa(max) + ")"
}

// Admit decides whether key may take a running slot now. claimed are keys
// admitted whose rollout has not yet been saved (they hold a slot);
// evicting are keys already asked to sleep to make room (their slots are
// as good as free, and they are not picked again). now is when key joins
// the queue if it is not in it yet. It is a pure function.
func Admit(max int, evict string, entries []SlotEntry, claimed, evicting map[string]bool, key string, now time.Time) Admission {
	if max <= 0 {
		return Admission{Admitted: true}
	}
	type waiter struct {
		key string
		at  time.Time
	}
	// Claims count whether or not the store has their key yet (a new
	// preview has no record until its rollout saves one).
	holding := 0
	for k := range claimed {
		if k != key {
			holding++
		}
	}
	var waiting []waiter
	var self *SlotEntry
	var victim *SlotEntry
	for i := range entries {
		e := &entries[i]
		if e.Key == key {
			self = e
			continue
		}
		switch {
		case e.holds() || claimed[e.Key]:
			if !claimed[e.Key] {
				holding++
			}
			if evict == env.EvictIdle && e.Status == env.StatusReady && !e.Kept && !evicting[e.Key] && !claimed[e.Key] &&
				(victim == nil || e.Activity.Before(victim.Activity) || (e.Activity.Equal(victim.Activity) && e.Key < victim.Key)) {
				victim = e
			}
		case e.Status == env.StatusQueued && !e.Production:
			waiting = append(waiting, waiter{e.Key, e.QueuedAt})
		}
	}
	if self != nil && (self.Production || self.holds() || claimed[key]) {
		return Admission{Admitted: true}
	}
	at := now
	if self != nil && self.Status == env.StatusQueued && !self.QueuedAt.IsZero() {
		at = self.QueuedAt
	}
	waiting = append(waiting, waiter{key, at})
	slices.SortFunc(waiting, func(a, b waiter) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	place := slices.IndexFunc(waiting, func(w waiter) bool { return w.key == key })
	free := max - holding
	if place < free {
		return Admission{Admitted: true}
	}
	a := Admission{Place: place + 1, Of: len(waiting)}
	// Slots being emptied by evictions already asked for go to those
	// ahead in the queue first; only a key beyond them evicts another.
	if evict == env.EvictIdle && victim != nil && place >= free+len(evicting) {
		a.Evict = victim.Key
	}
	return a
}

func itoa(n int) string { return strconv.Itoa(n) }

// ordinal says n as 1st, 2nd, 3rd, 4th, 11th, 21st...
func ordinal(n int) string {
	suffix := "th"
	switch n % 100 {
	case 11, 12, 13:
	default:
		switch n % 10 {
		case 1:
			suffix = "st"
		case 2:
			suffix = "nd"
		case 3:
			suffix = "rd"
		}
	}
	return itoa(n) + suffix
}
