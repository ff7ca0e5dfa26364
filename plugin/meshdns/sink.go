package meshdns

import (
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

	mu sync.Mutex
	// skipped is what was left out of the table and reported, by host and
	// reason, with the error: a full state that still leaves it out, or an
	// update that refuses it the same way again, is not reported again.
	skipped map[string]map[string]string
}

func (m *MeshDNS) addSource(s source.Source) {
	m.sources = append(m.sources, &sink{name: s.Name(), id: m.table.AddSource(s.Name()), src: s, table: m.table,
		skipped: map[string]map[string]string{}})
}

func (s *sink) Replace(es []table.Entry, skipped []source.Rejection) {
	res := s.table.Replace(s.id, es)
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
	res := s.table.Apply(s.id, upserts, deletes)
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
