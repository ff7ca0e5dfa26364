package meshdns

import (
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
}

func (m *MeshDNS) addSource(s source.Source) {
	m.sources = append(m.sources, &sink{name: s.Name(), id: m.table.AddSource(s.Name()), src: s, table: m.table})
}

func (s *sink) Replace(es []table.Entry) { s.record(s.table.Replace(s.id, es)) }

func (s *sink) Apply(upserts []table.Entry, deletes []string) {
	s.record(s.table.Apply(s.id, upserts, deletes))
}

func (s *sink) record(res table.Result) {
	for _, r := range res.Rejected {
		s.Reject(r.Host, r.Reason, r.Err)
	}
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
