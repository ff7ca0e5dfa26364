package main

import (
	"fmt"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

const (
	typeA    = dns.TypeA
	typeAAAA = dns.TypeAAAA
)

// meshService is a Service every row's mesh-name load asks for; it exists
// before any server starts and never changes.
type meshService struct{ name, ip string }

func hostOf(name string) string { return name + "." + meshNamespace + ".svc.cluster.local" }

func (m meshService) host() string { return hostOf(m.name) }

var meshServices = []meshService{
	{"alpha", "10.96.200.1"},
	{"beta", "10.96.200.2"},
	{"gamma", "10.96.200.3"},
}

// meshProbes are the mesh-name load: each Service's A record, a type it
// has none of (NODATA), and a name of the mesh's zone that does not exist
// (NXDOMAIN, answered by meshdns, never upstream).
func meshProbes() []harness.Probe {
	var ps []harness.Probe
	for _, m := range meshServices {
		ps = append(ps, harness.Probe{Name: m.host() + ".", Qtype: typeA, Want: m.ip})
	}
	return append(ps,
		harness.Probe{Name: meshServices[0].host() + ".", Qtype: typeAAAA, Want: "NODATA"},
		harness.Probe{Name: hostOf("nope") + ".", Qtype: typeA, Want: "NXDOMAIN"},
	)
}

// oneMeshProbe is the upstream rows' mesh-name load: one name.
func oneMeshProbe() []harness.Probe { return meshProbes()[:1] }

// externalProbes are n names of the upstream's zone, each asked once while
// the load lasts less than n queries, so no cache answers for the upstream.
func externalProbes(prefix string, n int) []harness.Probe {
	ps := make([]harness.Probe, n)
	for i := range ps {
		ps[i] = externalProbe(fmt.Sprintf("%s-%d", prefix, i))
	}
	return ps
}

// loads are the two clients of a row: one asks mesh names, the other
// external names; each has its own sockets, rate and tally.
type loads struct {
	mesh, ext         *harness.Load
	meshRate, extRate int
	meshQ, extQ       []*harness.Query
	stopped           time.Time
}

// startLoads starts both clients against s. planned is how long the row
// is expected to last, for the number of distinct external names.
func startLoads(s *server, prefix string, mesh []harness.Probe, meshRate, extRate int, planned time.Duration) (*loads, error) {
	ext := externalProbes(prefix, min(extRate*int(planned.Seconds()+30), 400_000))
	m, err := harness.StartLoad(s.dial(), s.addr, 2, meshRate, mesh)
	if err != nil {
		return nil, err
	}
	// A socket per 1,000 queries/s: its 16-bit IDs come round again only
	// long after the reply deadline.
	e, err := harness.StartLoad(s.dial(), s.addr, max(2, extRate/1000), extRate, ext)
	if err != nil {
		m.Stop()
		return nil, err
	}
	return &loads{mesh: m, ext: e, meshRate: meshRate, extRate: extRate}, nil
}

// stop stops both clients, waits out their last replies, and keeps what
// they sent.
func (l *loads) stop() {
	l.stopped = time.Now()
	done := make(chan struct{})
	go func() {
		l.extQ = l.ext.Stop()
		close(done)
	}()
	l.meshQ = l.mesh.Stop()
	<-done
}

// tally counts what each client sent in [from, to).
func (l *loads) tally(from, to time.Time) (mesh, ext harness.Tally) {
	return harness.Count(l.meshQ, l.mesh.Probes(), from, to), harness.Count(l.extQ, l.ext.Probes(), from, to)
}
