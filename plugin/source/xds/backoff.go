package xds

import (
	"math/rand/v2"
	"time"
)

// defaultBackoff waits 1s, 2s, then 4s between connection attempts: a
// refused connection costs istiod nothing, and a longer wait is how late
// meshdns would notice that istiod is back.
var defaultBackoff = backoff{base: time.Second, max: 4 * time.Second}

// backoff is a capped exponential backoff with jitter, so that nodes cut off
// together do not all reconnect to istiod at the same instant.
type backoff struct {
	base, max time.Duration
	cur       time.Duration
}

// next returns a wait in [cur/2, cur], cur doubling each call up to max.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.base
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }
