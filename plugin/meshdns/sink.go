package meshdns

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// sink connects one source to the table, with its metrics and logs.
type sink struct {
	name   string
	id     table.SourceID
	src    source.Source
	table  *table.Table
	synced atomic.Bool
	// noCapture: nothing on this host captures traffic to auto-allocated
	// VIPs (capture off), so hosts that have only those are not served.
	noCapture bool

	mu sync.Mutex
	// skipped is what was left out of the table and reported, by host and
	// reason, with the error: a full state that still leaves it out, or an
	// update that refuses it the same way again, is not reported again.
	skipped map[string]map[string]string
}

func (m *MeshDNS) addSource(s source.Source) {
	m.sources = append(m.sources, &sink{name: s.Name(), id: m.table.AddSource(s.Name()), src: s, table: m.table,
		skipped: map[string]map[string]string{}, noCapture: m.noCapture})
}

func (s *sink) Replace(es []table.Entry, skipped []source.Rejection) {
	res := s.table.Replace(s.id, s.withoutVIPs(es))
	s.mu.Lock()
	was := s.skipped
	s.skipped = map[string]map[string]string{}
	for _, r := range skipped {
		s.skip(was, r.Object, r.Reason, r.Err)
	}
	for _, r := range res.Rejected {
		s.skip(was, r.Host, r.Reason, r.Err)
	}
	s.mu.Unlock()
	s.record(res)
}

func (s *sink) Apply(upserts []table.Entry, deletes []string) {
	res := s.table.Apply(s.id, s.withoutVIPs(upserts), deletes)
	s.mu.Lock()
	was := s.skipped
	refused := map[string]bool{}
	for _, r := range res.Rejected {
		refused[r.Host] = true
	}
	// What is now served, or gone, is no longer skipped.
	for _, e := range upserts {
		if !refused[e.Host] {
			delete(s.skipped, e.Host)
		}
	}
	for _, h := range deletes {
		delete(s.skipped, h)
	}
	for _, r := range res.Rejected {
		s.skip(was, r.Host, r.Reason, r.Err)
	}
	s.mu.Unlock()
	s.record(res)
}

// skip notes that host was left out for reason, and reports it unless was
// already holds the same.
func (s *sink) skip(was map[string]map[string]string, host, reason string, err error) {
	msg := err.Error()
	if was[host][reason] != msg {
		s.Reject(host, reason, err)
	}
	if s.skipped[host] == nil {
		s.skipped[host] = map[string]string{}
	}
	s.skipped[host][reason] = msg
}

// The ranges Istio allocates ServiceEntry VIPs from: istiod's and
// auto_allocate's.
var vipRanges = [...]netip.Prefix{netip.MustParsePrefix("240.240.0.0/16"), netip.MustParsePrefix("2001:2::/48")}

// withoutVIPs leaves out, with capture off, the addresses of the
// ServiceEntry hosts that have only auto-allocated VIPs: such a host then has
// nothing to answer and is left to the next plugin, as on a host without
// Istio. es is not changed.
func (s *sink) withoutVIPs(es []table.Entry) []table.Entry {
	if !s.noCapture {
		return es
	}
	var out []table.Entry
	for i, e := range es {
		if e.Registry != table.External || len(e.Addrs) == 0 || !allVIPs(e.Addrs) {
			continue
		}
		if out == nil {
			out = slices.Clone(es)
		}
		out[i].Addrs = nil
	}
	if out == nil {
		return es
	}
	return out
}

func allVIPs(addrs []netip.Addr) bool {
	for _, a := range addrs {
		if !vipRanges[0].Contains(a) && !vipRanges[1].Contains(a) {
			return false
		}
	}
	return true
}

func (s *sink) record(res table.Result) {
	for op, n := range map[string]int{"add": res.Added, "change": res.Changed, "delete": res.Deleted} {
		if n > 0 {
			updates.WithLabelValues(s.name, op).Add(float64(n))
		}
	}
	if res.Added+res.Changed+res.Deleted > 0 {
		lastUpdate.WithLabelValues(s.name).Set(float64(time.Now().Unix()))
		// Another source's names may have changed too: its host lost or won.
		for _, st := range s.table.Stats() {
			entries.WithLabelValues(st.Name).Set(float64(st.Entries))
			names.WithLabelValues(st.Name).Set(float64(st.Names))
		}
		log.Debugf("source %s: %d added, %d changed, %d deleted, %d unchanged", s.name, res.Added, res.Changed, res.Deleted, res.Unchanged)
	}
}

func (s *sink) Reject(object, reason string, err error) {
	rejected.WithLabelValues(s.name, reason).Inc()
	log.Warningf("source %s: skipped %s: %v", s.name, object, err)
}

func (s *sink) Synced() {
	if !s.synced.Swap(true) {
		log.Infof("source %s: loaded", s.name)
	}
}

func (s *sink) Up(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	sourceUp.WithLabelValues(s.name).Set(v)
}
