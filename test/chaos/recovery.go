package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshdns/meshdns/test/harness"
)

// recoverPoll is how often what a fault changed is asked for.
const recoverPoll = 20 * time.Millisecond

// recover polls what the fault changed until the server answers all of it
// right, and says how long after the component's return that was (0 when
// it already did then), and, when the source had reported itself down, how
// long it took to report itself up; or, when it missed the target with its
// source up all along, whose wait that was.
func (l *lab) recover(s *server, inj injection) (time.Duration, bool, []string) {
	up := make(chan string, 1)
	go func() { up <- sourceUpAgain(s, inj.returned, l.prof.RecoverLimit) }()
	took, ok := l.awaitChanges(s, inj)
	var notes []string
	switch note := <-up; {
	case note != "":
		notes = append(notes, note)
	case s.metrics != "" && (!ok || took > recoveryTarget):
		notes = append(notes, "the source was connected at the component's return: the wait was its control plane's, to send the change (for xds, istiod's, which must see the API server again first)")
	}
	return took, ok, notes
}

// awaitChanges polls what the fault changed until the server answers all
// of it right.
func (l *lab) awaitChanges(s *server, inj injection) (time.Duration, bool) {
	var last time.Time
	recovered := true
	if inj.freshExternal {
		var n atomic.Int64
		name := func() string {
			return externalProbe(fmt.Sprintf("recover-%s-%d", s.source, n.Add(1))).Name
		}
		// The upstream answers every name of its zone with that name's
		// address: a right answer is one that is externalIP's.
		last, recovered = pollAnswerFunc(s, typeA, name, externalIP, l.prof.RecoverLimit)
	}
	// Each change polled at once: the last to answer right is the
	// recovery.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range inj.fresh {
		wg.Go(func() {
			at, ok := pollAnswer(s, p.Qtype, fixedName(p.Name), p.Want, l.prof.RecoverLimit)
			mu.Lock()
			defer mu.Unlock()
			recovered = recovered && ok
			if at.After(last) {
				last = at
			}
		})
	}
	wg.Wait()
	if !recovered {
		return 0, false
	}
	return max(0, last.Sub(inj.returned)), true
}

// sourceUpAgain says when coredns_meshdns_source_up came back to 1 after
// from, if it was 0 then; "" if it was up, or the server has no metrics.
func sourceUpAgain(s *server, from time.Time, limit time.Duration) string {
	if s.metrics == "" {
		return ""
	}
	first := true
	for {
		v, err := harness.Metric(s.metrics, "coredns_meshdns_source_up")
		switch {
		case err == nil && v >= 1 && first:
			return ""
		case err == nil && v >= 1:
			return fmt.Sprintf("the source reported itself up again %s after the component's return", time.Since(from).Round(10*time.Millisecond))
		case time.Since(from) > limit:
			return fmt.Sprintf("the source still reported itself down %s after the component's return", limit)
		}
		first = false
		time.Sleep(recoverPoll)
	}
}

func fixedName(name string) func() string { return func() string { return name } }

// pollAnswer asks the server name every recoverPoll until a reply is want,
// and returns when that reply came.
func pollAnswer(s *server, qtype uint16, name func() string, want string, limit time.Duration) (time.Time, bool) {
	return pollAnswerFunc(s, qtype, name, func(string) string { return want }, limit)
}

// pollAnswerFunc is pollAnswer with the right answer a function of the
// name asked. Each query is its own goroutine: one that is lost (the
// server's socket buffer full, a restart) does not hold up the next ones
// for its whole timeout.
func pollAnswerFunc(s *server, qtype uint16, name func() string, want func(name string) string, limit time.Duration) (time.Time, bool) {
	found := make(chan time.Time, 1)
	tick := time.NewTicker(recoverPoll)
	defer tick.Stop()
	deadline := time.After(limit)
	for {
		go func(n string) {
			if s.answer(n, qtype) == want(n) {
				select {
				case found <- time.Now():
				default:
				}
			}
		}(name())
		select {
		case at := <-found:
			return at, true
		case <-deadline:
			return time.Time{}, false
		case <-tick.C:
		}
	}
}
