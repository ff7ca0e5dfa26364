package xds

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := backoff{base: time.Second, max: 30 * time.Second}
	// Each wait is in [cur/2, cur]; cur doubles up to the cap.
	for i, cur := range []time.Duration{1, 2, 4, 8, 16, 30, 30, 30} {
		cur *= time.Second
		if d := b.next(); d < cur/2 || d > cur {
			t.Errorf("attempt %d: %s, want [%s, %s]", i, d, cur/2, cur)
		}
	}
	b.reset()
	if d := b.next(); d > time.Second {
		t.Errorf("after reset: %s", d)
	}
	// Jittered: many draws are not all equal.
	seen := map[time.Duration]bool{}
	for range 20 {
		b.reset()
		seen[b.next()] = true
	}
	if len(seen) < 2 {
		t.Error("no jitter")
	}
}
