package kubernetes

import "hash/maphash"

// serviceSet holds Services by "<name>.<namespace>", a key it reads from
// each Service rather than storing: a slot is a pointer, 8 bytes, and the
// slots are at most three quarters full. The state holds every Service of
// the cluster in one. Not safe for concurrent use.
//
// It is not a Go map because it is smaller. At 100k Services the set takes
// 2.0 MiB (21 B a Service: its slots have just doubled) and a
// map[string]*service keyed by the Service's own nameNS, which shares the
// Service's string, 3.3 MiB (35 B a Service): 1.3 MiB less, 13 % of the
// source's 10.4 MiB at 100k (BenchmarkServiceMemory). A get costs more,
// each probe reading a Service: about 440 ns against 190 ns for the map,
// over 100k Services in no order; the state gets a Service per event, not
// per query.
//
//	go test -run '^$' -bench TrickServiceSetMemory -benchtime 1x ./plugin/source/kubernetes/
//	go test -run '^$' -bench TrickServiceSetGet ./plugin/source/kubernetes/
type serviceSet struct {
	seed  maphash.Seed
	slots []*service // linear probing, at most three quarters full; nil is free
	n     int
}

func newServiceSet() *serviceSet { return &serviceSet{seed: maphash.MakeSeed()} }

func (m *serviceSet) home(key string) int {
	return int(maphash.String(m.seed, key) & uint64(len(m.slots)-1))
}

// index returns the slot of key, or of the free slot where it would go.
func (m *serviceSet) index(key string) int {
	mask := len(m.slots) - 1
	i := m.home(key)
	for m.slots[i] != nil && m.slots[i].nameNS() != key {
		i = (i + 1) & mask
	}
	return i
}

// get returns the Service of key, or nil.
func (m *serviceSet) get(key string) *service {
	if m.n == 0 {
		return nil
	}
	return m.slots[m.index(key)]
}

// put adds s, or replaces the Service of the same key.
func (m *serviceSet) put(s *service) {
	if (m.n+1)*4 > len(m.slots)*3 {
		m.resize(max(8, 2*len(m.slots)))
	}
	i := m.index(s.nameNS())
	if m.slots[i] == nil {
		m.n++
	}
	m.slots[i] = s
}

// del removes the Service of key, if any, and moves later Services of its
// probe run back, so that every Service stays reachable from its home slot
// without tombstones. The slots shrink once an eighth full.
func (m *serviceSet) del(key string) {
	if m.n == 0 {
		return
	}
	i := m.index(key)
	if m.slots[i] == nil {
		return
	}
	mask := len(m.slots) - 1
	for j := i; ; {
		j = (j + 1) & mask
		s := m.slots[j]
		if s == nil {
			break
		}
		// s stays unless its home is cyclically outside (i, j].
		if h := m.home(s.nameNS()); (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			m.slots[i] = s
			i = j
		}
	}
	m.slots[i] = nil
	m.n--
	if len(m.slots) > 8 && m.n*8 < len(m.slots) {
		m.resize(len(m.slots) / 2)
	}
}

func (m *serviceSet) resize(size int) {
	old := m.slots
	m.slots = make([]*service, size)
	for _, s := range old {
		if s != nil {
			m.slots[m.index(s.nameNS())] = s
		}
	}
}

// all yields every Service, in no order.
func (m *serviceSet) all(yield func(*service) bool) {
	for _, s := range m.slots {
		if s != nil && !yield(s) {
			return
		}
	}
}
