package kubernetes

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// scope is what decides the names of one source.
type scope struct {
	domain       string
	namespace    string // client namespace for exportTo; "" serves the whole mesh
	autoAllocate bool
}

// state holds the objects of one cluster, already converted (the same ones
// the informer caches hold), and a fingerprint of each entry last given to
// the sink. Each change recomputes only the hosts it touches and sends only
// those whose entry changed.
type state struct {
	scope scope
	sink  source.Sink

	mu       sync.Mutex
	synced   bool
	services map[string]*service        // by host
	slices   map[string]*endpointSlice  // by slice "ns/name"
	slicesOf map[string]map[string]bool // service host -> slice keys
	ses      map[string]*serviceEntry   // by "ns/name"
	sesOf    map[string]map[string]bool // host -> ServiceEntry keys
	wes      map[string]*workloadEntry  // by "ns/name"
	alloc    map[allocKey][]netip.Addr  // meshdns's own allocation
	served   map[string]uint64          // by host: fingerprint of what the sink has
	seed     maphash.Seed
}

func newState(sc scope, sink source.Sink) *state {
	return &state{
		scope: sc, sink: sink,
		services: map[string]*service{},
		slices:   map[string]*endpointSlice{}, slicesOf: map[string]map[string]bool{},
		ses: map[string]*serviceEntry{}, sesOf: map[string]map[string]bool{},
		wes:    map[string]*workloadEntry{},
		alloc:  map[allocKey][]netip.Addr{},
		served: map[string]uint64{},
		seed:   maphash.MakeSeed(),
	}
}

// setService stores or, when s is nil, removes the Service ns/name.
func (st *state) setService(ns, name string, s *service) {
	st.mu.Lock()
	defer st.mu.Unlock()
	host := serviceHost(name, ns, st.scope.domain)
	if s == nil {
		delete(st.services, host)
	} else {
		host = s.host // the same string, shared rather than a copy per map
		st.services[host] = s
	}
	st.flush(map[string]bool{host: true})
}

// setSlice stores or, when s is nil, removes the EndpointSlice key.
func (st *state) setSlice(key string, s *endpointSlice) {
	st.mu.Lock()
	defer st.mu.Unlock()
	affected := map[string]bool{}
	if old := st.slices[key]; old != nil {
		host := st.sliceHost(old)
		affected[host] = true
		delete(st.slicesOf[host], key)
		if len(st.slicesOf[host]) == 0 {
			delete(st.slicesOf, host)
		}
		delete(st.slices, key)
	}
	if s != nil {
		host := st.sliceHost(s)
		affected[host] = true
		if st.slicesOf[host] == nil {
			st.slicesOf[host] = map[string]bool{}
		}
		st.slicesOf[host][key] = true
		st.slices[key] = s
	}
	st.flush(affected)
}

func (st *state) sliceHost(s *endpointSlice) string {
	ns, name, _ := strings.Cut(s.service, "/")
	return serviceHost(name, ns, st.scope.domain)
}

// setServiceEntry stores or, when se is nil, removes the ServiceEntry key.
func (st *state) setServiceEntry(key string, se *serviceEntry) {
	st.mu.Lock()
	defer st.mu.Unlock()
	affected := map[string]bool{}
	if old := st.ses[key]; old != nil {
		for _, h := range old.hosts {
			affected[h] = true
			delete(st.sesOf[h], key)
			if len(st.sesOf[h]) == 0 {
				delete(st.sesOf, h)
			}
		}
		delete(st.ses, key)
	}
	if se != nil {
		for _, h := range se.hosts {
			affected[h] = true
			if st.sesOf[h] == nil {
				st.sesOf[h] = map[string]bool{}
			}
			st.sesOf[h][key] = true
		}
		st.ses[key] = se
	}
	// An allocation depends on every other entry: hosts whose address moved
	// are affected too. Before the initial sync, sync allocates once.
	if st.scope.autoAllocate && st.synced {
		alloc := allocate(slices.Collect(maps.Values(st.ses)))
		for k, a := range alloc {
			if !slices.Equal(st.alloc[k], a) {
				affected[k.host] = true
			}
		}
		for k := range st.alloc {
			if _, ok := alloc[k]; !ok {
				affected[k.host] = true
			}
		}
		st.alloc = alloc
	}
	st.flush(affected)
}

// setWorkloadEntry stores or, when we is nil, removes the WorkloadEntry key.
func (st *state) setWorkloadEntry(key string, we *workloadEntry) {
	st.mu.Lock()
	defer st.mu.Unlock()
	ns, _, _ := strings.Cut(key, "/")
	if we == nil {
		delete(st.wes, key)
	} else {
		st.wes[key] = we
	}
	if !st.synced {
		return
	}
	affected := map[string]bool{}
	for _, se := range st.ses {
		if se.ns == ns && se.selector != nil {
			for _, h := range se.hosts {
				affected[h] = true
			}
		}
	}
	st.flush(affected)
}

// sync marks the initial list as loaded and gives the sink the full state.
func (st *state) sync() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.synced = true
	if st.scope.autoAllocate {
		st.alloc = allocate(slices.Collect(maps.Values(st.ses)))
	}
	hosts := st.hosts()
	st.served = make(map[string]uint64, len(hosts))
	var entries []table.Entry
	for _, h := range hosts {
		if e, ok := st.build(h); ok {
			st.served[e.Host] = st.fingerprint(e)
			entries = append(entries, e)
		}
	}
	st.sink.Replace(entries)
}

func (st *state) hosts() []string {
	hosts := slices.Collect(maps.Keys(st.services))
	for h := range st.sesOf {
		if st.services[h] == nil {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	return hosts
}

// flush sends the sink the entries of affected hosts that changed.
func (st *state) flush(affected map[string]bool) {
	if !st.synced {
		return
	}
	var upserts []table.Entry
	var deletes []string
	for _, h := range slices.Sorted(maps.Keys(affected)) {
		e, ok := st.build(h)
		old, had := st.served[h]
		switch {
		case ok:
			if f := st.fingerprint(e); !had || f != old {
				st.served[e.Host] = f
				upserts = append(upserts, e)
			}
		case had:
			delete(st.served, h)
			deletes = append(deletes, h)
		}
	}
	if len(upserts) > 0 || len(deletes) > 0 {
		st.sink.Apply(upserts, deletes)
	}
}

// build computes the entry of host: a visible Service wins; else the visible
// ServiceEntries of one namespace, merged.
func (st *state) build(host string) (table.Entry, bool) {
	client := st.scope.namespace
	if s := st.services[host]; s != nil && visible(s.more().exportTo, s.namespace(), client) {
		var eps []*endpointSlice
		for k := range st.slicesOf[host] {
			eps = append(eps, st.slices[k])
		}
		return serviceToEntry(s, eps), true
	}
	var ses []*serviceEntry
	for k := range st.sesOf[host] {
		if se := st.ses[k]; visible(se.exportTo, se.ns, client) {
			ses = append(ses, se)
		}
	}
	if len(ses) == 0 {
		return table.Entry{}, false
	}
	win, lose := pickNamespace(ses, client)
	for _, se := range lose {
		st.sink.Reject("ServiceEntry "+se.key(), "host_conflict",
			fmt.Errorf("host %s is already defined in namespace %s", host, win[0].ns))
	}
	var wes []*workloadEntry
	for _, we := range st.wes {
		if we.ns == win[0].ns {
			wes = append(wes, we)
		}
	}
	e := externalEntry(host, win, wes, st.alloc)
	// A ServiceEntry with no address is left to upstream DNS, as in Istio.
	return e, len(e.Addrs) > 0
}

// fingerprint hashes an entry: the state keeps 8 bytes per host, not the
// entry, to know whether a rebuilt entry differs from what the sink has.
func (st *state) fingerprint(e table.Entry) uint64 {
	var h maphash.Hash
	h.SetSeed(st.seed)
	var b []byte
	b = appendString(b, e.Host)
	b = append(b, byte(e.Registry))
	b = appendString(b, e.Target)
	b = binary.AppendUvarint(b, uint64(len(e.Addrs)))
	for _, a := range e.Addrs {
		b = appendAddr(b, a)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Ports)))
	for _, p := range e.Ports {
		b = appendString(b, p.Name)
		b = binary.BigEndian.AppendUint16(b, p.Number)
		b = append(b, byte(p.Protocol))
	}
	b = binary.AppendUvarint(b, uint64(len(e.Endpoints)))
	for _, ep := range e.Endpoints {
		b = appendString(b, ep.Hostname)
		b = appendAddr(b, ep.Addr)
	}
	h.Write(b)
	return h.Sum64()
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendAddr writes netip.Addr's binary form (with any zone).
func appendAddr(b []byte, a netip.Addr) []byte {
	ab, _ := a.MarshalBinary()
	return appendString(b, string(ab))
}
