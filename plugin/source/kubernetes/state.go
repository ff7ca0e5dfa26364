package kubernetes

import (
	"fmt"
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

// state holds the objects of one cluster, already converted; it is the
// source's only copy of them (newWatch). Each change recomputes only the
// hosts it touches and sends them to the sink, which tells apart what
// changed. Indexes keep that work to what the change touches: a
// WorkloadEntry finds the ServiceEntries that select it by its labels, a
// host the WorkloadEntries it selects by its selector's labels, and the
// allocator moves only the addresses a ServiceEntry's probes cross.
type state struct {
	scope  scope
	sink   source.Sink
	suffix string // ".svc.<domain>"

	// mu guards the objects; sendMu keeps the sink's updates in the order
	// of the changes once mu is released, so that the table's update does
	// not hold up the next event (flush).
	mu       sync.Mutex
	sendMu   sync.Mutex
	synced   bool
	services *serviceSet                // by "<name>.<namespace>"
	slices   map[string]*endpointSlice  // by slice "ns/name"
	slicesOf map[string]map[string]bool // service host -> slice keys
	ses      map[string]*serviceEntry   // by "ns/name"
	sesOf    map[string]map[string]bool // host -> ServiceEntry keys
	wes      map[string]*workloadEntry  // by "ns/name"
	wesIn    map[string]*workloadIndex  // by namespace
	selIn    map[string]*selectorIndex  // by namespace: ServiceEntries with a workload selector
	imports  map[string]*serviceImport  // by "ns/name"
	alloc    *allocator                 // meshdns's own allocation; nil without auto_allocate
}

func newState(sc scope, sink source.Sink) *state {
	st := &state{
		scope: sc, sink: sink, suffix: ".svc." + sc.domain,
		services: newServiceSet(),
		slices:   map[string]*endpointSlice{}, slicesOf: map[string]map[string]bool{},
		ses: map[string]*serviceEntry{}, sesOf: map[string]map[string]bool{},
		wes: map[string]*workloadEntry{}, wesIn: map[string]*workloadIndex{}, selIn: map[string]*selectorIndex{},
		imports: map[string]*serviceImport{},
	}
	if sc.autoAllocate {
		st.alloc = newAllocator()
	}
	return st
}

// setService stores or, when s is nil, removes the Service ns/name.
func (st *state) setService(ns, name string, s *service) {
	st.mu.Lock()
	if s == nil {
		st.services.del(name + "." + ns)
	} else {
		st.services.put(s)
	}
	st.flush(map[string]bool{serviceHost(name, ns, st.scope.domain): true})
}

// serviceAt returns the Service whose host is host, or nil.
func (st *state) serviceAt(host string) *service {
	if nameNS, ok := strings.CutSuffix(host, st.suffix); ok {
		return st.services.get(nameNS)
	}
	return nil
}

// setSlice stores or, when s is nil, removes the EndpointSlice key.
func (st *state) setSlice(key string, s *endpointSlice) {
	st.mu.Lock()
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
	if s.cluster != "" {
		return importHost(name, ns)
	}
	return serviceHost(name, ns, st.scope.domain)
}

// setImport stores or, when si is nil, removes the ServiceImport key.
func (st *state) setImport(key string, si *serviceImport) {
	st.mu.Lock()
	ns, name, _ := strings.Cut(key, "/")
	if si == nil {
		delete(st.imports, key)
	} else {
		st.imports[key] = si
	}
	st.flush(map[string]bool{importHost(name, ns): true})
}

// setServiceEntry stores or, when se is nil, removes the ServiceEntry key.
func (st *state) setServiceEntry(key string, se *serviceEntry) {
	st.mu.Lock()
	affected := map[string]bool{}
	old := st.ses[key]
	if old != nil {
		for _, h := range old.hosts {
			affected[h] = true
			delete(st.sesOf[h], key)
			if len(st.sesOf[h]) == 0 {
				delete(st.sesOf, h)
			}
		}
		if old.selector != nil {
			x := st.selIn[old.ns]
			x.del(old)
			if x.isEmpty() {
				delete(st.selIn, old.ns)
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
		if se.selector != nil {
			if st.selIn[se.ns] == nil {
				st.selIn[se.ns] = newSelectorIndex()
			}
			st.selIn[se.ns].put(se)
		}
		st.ses[key] = se
	}
	// An allocation may move others' addresses: their hosts change too.
	if st.alloc != nil {
		for _, k := range st.alloc.update(old, se) {
			affected[k.host] = true
		}
	}
	st.flush(affected)
}

// setWorkloadEntry stores or, when we is nil, removes the WorkloadEntry key.
// The hosts it changes are those of the ServiceEntries that select it
// before or after.
func (st *state) setWorkloadEntry(key string, we *workloadEntry) {
	st.mu.Lock()
	old := st.wes[key]
	if old != nil && we != nil && old.addr == we.addr && old.unhealthy == we.unhealthy && maps.Equal(old.labels, we.labels) {
		st.wes[key] = we
		st.wesIn[we.ns].put(we)
		st.mu.Unlock()
		return // a new resource version that DNS does not see
	}
	affected := map[string]bool{}
	for _, w := range []*workloadEntry{old, we} {
		if w == nil {
			continue
		}
		if x := st.selIn[w.ns]; x != nil {
			x.selecting(w.labels, func(se *serviceEntry) {
				for _, h := range se.hosts {
					affected[h] = true
				}
			})
		}
	}
	if old != nil {
		x := st.wesIn[old.ns]
		x.del(old)
		if len(x.all) == 0 {
			delete(st.wesIn, old.ns)
		}
		delete(st.wes, key)
	}
	if we != nil {
		if st.wesIn[we.ns] == nil {
			st.wesIn[we.ns] = newWorkloadIndex()
		}
		st.wesIn[we.ns].put(we)
		st.wes[key] = we
	}
	st.flush(affected)
}

// sync marks the initial list as loaded and gives the sink the full state.
func (st *state) sync() {
	st.mu.Lock()
	st.synced = true
	var entries []table.Entry
	for _, h := range st.hosts() {
		if e, ok := st.build(h); ok {
			entries = append(entries, e)
		}
	}
	st.sendMu.Lock()
	st.mu.Unlock()
	defer st.sendMu.Unlock()
	st.sink.Replace(entries, nil)
}

func (st *state) hosts() []string {
	var hosts []string
	for s := range st.services.all {
		hosts = append(hosts, s.host(st.scope.domain))
	}
	for h := range st.sesOf {
		if st.serviceAt(h) == nil {
			hosts = append(hosts, h)
		}
	}
	for _, si := range st.imports {
		hosts = append(hosts, importHost(si.name, si.ns))
	}
	slices.Sort(hosts)
	return hosts
}

// flush builds the entries of affected hosts, with st.mu held, and sends
// them to the sink: a host with no entry is deleted. The sink leaves alone
// what did not change. It releases st.mu before the sink's work, holding
// sendMu instead so that updates reach the sink in order.
func (st *state) flush(affected map[string]bool) {
	if !st.synced {
		st.mu.Unlock()
		return
	}
	var upserts []table.Entry
	var deletes []string
	for _, h := range slices.Sorted(maps.Keys(affected)) {
		if e, ok := st.build(h); ok {
			upserts = append(upserts, e)
		} else {
			deletes = append(deletes, h)
		}
	}
	st.sendMu.Lock()
	st.mu.Unlock()
	defer st.sendMu.Unlock()
	if len(upserts) > 0 || len(deletes) > 0 {
		st.sink.Apply(upserts, deletes)
	}
}

// build computes the entry of host: a visible Service wins; else the visible
// ServiceEntries of one namespace, merged.
func (st *state) build(host string) (table.Entry, bool) {
	client := st.scope.namespace
	var eps []*endpointSlice
	for k := range st.slicesOf[host] {
		eps = append(eps, st.slices[k])
	}
	if nameNS, ok := strings.CutSuffix(host, clustersetSuffix); ok {
		name, ns, _ := strings.Cut(nameNS, ".")
		if si := st.imports[ns+"/"+name]; si != nil {
			return importToEntry(si, eps), true
		}
		return table.Entry{}, false
	}
	if s := st.serviceAt(host); s != nil && visible(s.more().exportTo, s.namespace(), client) {
		return serviceToEntry(s, st.scope.domain, eps), true
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
	e := externalEntry(host, win, st.selected(win[0].ns), st.allocated)
	// A ServiceEntry with no address is left to upstream DNS, as in Istio.
	return e, len(e.Addrs) > 0
}

// selected returns what a selector selects among ns's WorkloadEntries.
func (st *state) selected(ns string) func(selector map[string]string) []*workloadEntry {
	return func(selector map[string]string) []*workloadEntry {
		if x := st.wesIn[ns]; x != nil {
			return x.selected(selector)
		}
		return nil
	}
}

// allocated returns meshdns's own addresses for key.
func (st *state) allocated(key allocKey) []netip.Addr {
	if st.alloc == nil {
		return nil
	}
	return st.alloc.addrs(key)
}

// knownObjects is what the state holds of one kind in one namespace ("" for
// all), keyed "<namespace>/<name>", for the queue of that kind's watch
// (newWatch): on a relist, what the state holds and the API server no longer
// lists is deleted.
type knownObjects struct {
	st   *state
	ns   string
	keys func(yield func(key string)) // every key of the kind
	get  func(key string) (any, bool)
}

func (k knownObjects) ListKeys() []string {
	k.st.mu.Lock()
	defer k.st.mu.Unlock()
	var keys []string
	k.keys(func(key string) {
		if ns, _, _ := strings.Cut(key, "/"); k.ns == "" || ns == k.ns {
			keys = append(keys, key)
		}
	})
	return keys
}

func (k knownObjects) GetByKey(key string) (any, bool, error) {
	k.st.mu.Lock()
	defer k.st.mu.Unlock()
	obj, ok := k.get(key)
	return obj, ok, nil
}

func (st *state) knownServices(ns string) knownObjects {
	return knownObjects{st: st, ns: ns,
		keys: func(yield func(string)) {
			for s := range st.services.all {
				yield(s.namespace() + "/" + s.name())
			}
		},
		get: func(key string) (any, bool) {
			ns, name, _ := strings.Cut(key, "/")
			s := st.services.get(name + "." + ns)
			return s, s != nil
		},
	}
}

// knownIn is knownObjects over one of the state's maps by "ns/name".
func knownIn[T any](st *state, ns string, m map[string]*T) knownObjects {
	return knownObjects{st: st, ns: ns,
		keys: func(yield func(string)) {
			for key := range m {
				yield(key)
			}
		},
		get: func(key string) (any, bool) {
			obj, ok := m[key]
			return obj, ok
		},
	}
}
