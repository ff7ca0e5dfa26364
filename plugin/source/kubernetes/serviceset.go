package kubernetes

import "hash/maphash"

// serviceSet holds Services by "<name>.<namespace>", a key it reads from
// each Service rather than storing: 8 bytes a slot, where a Go map with
// string keys costs about 50 bytes a Service. The state holds every
// Service of the cluster in one. Not safe for concurrent use.
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

// del removes the Service of key, if any. Entries after it move back into
// the gap (no tombstones), and the slots shrink once an eighth full.
func (m *serviceSet) del(key string) {
	if m.n == 0 {
		return
	}
	i := m.index(key)
	if m.slots[i] == nil {
		return
	}
	mask := len(m.slots) - 1
	m.slots[i] = nil
	m.n--
	for j := (i + 1) & mask; m.slots[j] != nil; j = (j + 1) & mask {
		// slots[j] may fill the gap at i unless its home lies in (i, j].
		if h := m.home(m.slots[j].nameNS()); (j-h)&mask >= (j-i)&mask {
			m.slots[i], m.slots[j] = m.slots[j], nil
			i = j
		}
	}
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
