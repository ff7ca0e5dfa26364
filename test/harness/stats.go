package harness

import (
	"fmt"
	"math"
	"time"
)

// Percentile is the p-th percentile (0 < p ≤ 100) of durations sorted in
// ascending order, by nearest rank: the smallest that at least p% of them
// do not exceed. It is 0 for no durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// MiB writes a byte count in MiB, as the benchmark reports do.
func MiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
