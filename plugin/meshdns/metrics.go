package meshdns

import (
	"context"
	"sync"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type result uint8

const (
	resultHit result = iota
	resultShortcut
	resultWildcard
	resultNoData
	resultNXDomain
	resultFallthrough
	resultNotReady
	resultSharedNXDomain
	resultRefused
	resultServFail
	resultLimited
	resultCount
)

var resultNames = [resultCount]string{"hit", "shortcut", "wildcard", "nodata", "nxdomain", "fallthrough", "not_ready", "shared_nxdomain", "refused", "servfail", "limited"}

var (
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "requests_total",
		Help:      "Queries meshdns handled, by result: hit, shortcut, wildcard, nodata, nxdomain, fallthrough, not_ready, shared_nxdomain, refused, servfail, limited (not passed on: max_fallthrough queries were already).",
	}, []string{"server", "result"})

	entries = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "entries",
		Help:      "Hosts in the table, by source.",
	}, []string{"source"})

	names = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "names",
		Help:      "DNS names answered (hosts, short names, endpoint names), by the source that serves them.",
	}, []string{"source"})

	updates = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "updates_total",
		Help:      "Entries changed in the table, by source and operation (add, change, delete).",
	}, []string{"source", "op"})

	rejected = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "rejected_total",
		Help:      "Input a source or the table refused, by source and reason.",
	}, []string{"source", "reason"})

	lastUpdate = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "last_update_timestamp_seconds",
		Help:      "When a source last changed the table (Unix time).",
	}, []string{"source"})

	sourceUp = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "source_up",
		Help:      "1 when the source can read its input, else 0.",
	}, []string{"source"})
)

// counters caches the request counters of each server, so counting a query
// costs no allocation.
type counters struct {
	byServer sync.Map // server -> *[resultCount]prometheus.Counter
}

func (c *counters) inc(ctx context.Context, r result) {
	server := metrics.WithServer(ctx)
	v, ok := c.byServer.Load(server)
	if !ok {
		var cs [resultCount]prometheus.Counter
		for i := range cs {
			cs[i] = requests.WithLabelValues(server, resultNames[i])
		}
		v, _ = c.byServer.LoadOrStore(server, &cs)
	}
	v.(*[resultCount]prometheus.Counter)[r].Inc()
}
