package kubernetes

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"

	"k8s.io/client-go/tools/cache"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// recorder is a source.Sink that records calls. Like the table, it keeps
// the entries it holds and records of an Apply only what changes them.
type recorder struct {
	mu       sync.Mutex
	has      map[string]table.Entry
	replaced [][]table.Entry
	applies  []apply
	asked    []string // every host of every Apply, changed or not
	rejects  []string
	up       []bool
	synced   bool
}

type apply struct {
	upserts []table.Entry
	deletes []string
}

func (r *recorder) Replace(es []table.Entry, _ []source.Rejection) {
	r.mu.Lock()
	r.replaced = append(r.replaced, es)
	r.has = map[string]table.Entry{}
	for _, e := range es {
		r.has[e.Host] = e
	}
	r.mu.Unlock()
}
func (r *recorder) Apply(u []table.Entry, d []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.has == nil {
		r.has = map[string]table.Entry{}
	}
	var a apply
	for _, e := range u {
		r.asked = append(r.asked, e.Host)
	}
	r.asked = append(r.asked, d...)
	for _, e := range u {
		if old, ok := r.has[e.Host]; !ok || !reflect.DeepEqual(old, e) {
			r.has[e.Host] = e
			a.upserts = append(a.upserts, e)
		}
	}
	for _, h := range d {
		if _, ok := r.has[h]; ok {
			delete(r.has, h)
			a.deletes = append(a.deletes, h)
		}
	}
	if len(a.upserts) > 0 || len(a.deletes) > 0 {
		r.applies = append(r.applies, a)
	}
}
func (r *recorder) Reject(object, reason string, err error) {
	r.mu.Lock()
	r.rejects = append(r.rejects, object+" "+reason)
	r.mu.Unlock()
}
func (r *recorder) Synced()    { r.mu.Lock(); r.synced = true; r.mu.Unlock() }
func (r *recorder) Up(up bool) { r.mu.Lock(); r.up = append(r.up, up); r.mu.Unlock() }

// take returns and forgets the applies so far.
func (r *recorder) take() []apply {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.applies
	r.applies = nil
	return a
}

func hostsOf(es []table.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Host)
	}
	return out
}

func TestStateIncremental(t *testing.T) {
	rec := &recorder{}
	st := newState(scope{domain: "cluster.local"}, rec)
	web := svc("web.shop.svc.cluster.local", addrs("10.96.0.1"), nil, nil)
	st.setService("shop", "web", web)
	if len(rec.take()) != 0 {
		t.Fatal("applied before the initial sync")
	}
	st.sync()
	if len(rec.replaced) != 1 || !slices.Equal(hostsOf(rec.replaced[0]), []string{web.host("cluster.local")}) {
		t.Fatalf("replace = %v", rec.replaced)
	}

	// The same object again (a resync or a no-op update): nothing.
	st.setService("shop", "web", svc(web.host("cluster.local"), addrs("10.96.0.1"), nil, nil))
	if a := rec.take(); len(a) != 0 {
		t.Fatalf("unchanged service applied %v", a)
	}

	// A ServiceEntry with the same host loses to the Service: nothing.
	se := &serviceEntry{ns: "shop", name: "se", hosts: []string{web.host("cluster.local"), "api.example.com"}, specAddrs: true, addrs: addrs("192.0.2.1")}
	st.setServiceEntry("shop/se", se)
	a := rec.take()
	if len(a) != 1 || !slices.Equal(hostsOf(a[0].upserts), []string{"api.example.com"}) {
		t.Fatalf("applies = %+v, want only api.example.com", a)
	}

	// The Service goes: its host falls back to the ServiceEntry.
	st.setService("shop", "web", nil)
	a = rec.take()
	if len(a) != 1 || len(a[0].upserts) != 1 || a[0].upserts[0].Registry != table.External || len(a[0].deletes) != 0 {
		t.Fatalf("applies = %+v, want web as External", a)
	}

	// The ServiceEntry goes: both hosts are deleted.
	st.setServiceEntry("shop/se", nil)
	a = rec.take()
	if len(a) != 1 || !slices.Equal(a[0].deletes, []string{"api.example.com", web.host("cluster.local")}) {
		t.Fatalf("applies = %+v, want both deleted", a)
	}
}

func TestStateHeadlessAndWorkloadEntries(t *testing.T) {
	rec := &recorder{}
	st := newState(scope{domain: "cluster.local"}, rec)
	st.sync()
	st.setService("db", "mysql", svc("mysql.db.svc.cluster.local", nil, nil, &serviceRare{headless: true}))
	st.setSlice("db/mysql-1", &endpointSlice{service: "db/mysql", endpoints: []endpoint{{hostname: "mysql-0", addr: addrs("10.1.0.1")[0], ready: true}}})
	a := rec.take()
	if len(a) != 2 || len(a[1].upserts[0].Endpoints) != 1 {
		t.Fatalf("applies = %+v", a)
	}
	st.setSlice("db/mysql-1", nil)
	if a := rec.take(); len(a) != 1 || len(a[0].upserts[0].Addrs) != 0 {
		t.Fatalf("slice deleted: applies = %+v, want a known name with no address", a)
	}

	se := &serviceEntry{ns: "vm", name: "db", hosts: []string{"db.example.com"}, resolution: apinetworking.ServiceEntry_STATIC,
		selector: map[string]string{"app": "db"}}
	st.setServiceEntry("vm/db", se)
	if a := rec.take(); len(a) != 0 {
		t.Fatalf("no workload yet: applies = %+v", a)
	}
	st.setWorkloadEntry("vm/w1", &workloadEntry{ns: "vm", labels: map[string]string{"app": "db"}, addr: addrs("10.2.0.1")[0]})
	st.setWorkloadEntry("other/w2", &workloadEntry{ns: "other", labels: map[string]string{"app": "db"}, addr: addrs("10.2.0.2")[0]})
	a = rec.take()
	if len(a) != 1 || !slices.Equal(a[0].upserts[0].Addrs, addrs("10.2.0.1")) {
		t.Fatalf("applies = %+v, want db.example.com -> 10.2.0.1 only", a)
	}
	st.setWorkloadEntry("vm/w1", nil)
	if a := rec.take(); len(a) != 1 || !slices.Equal(a[0].deletes, []string{"db.example.com"}) {
		t.Fatalf("applies = %+v, want db.example.com deleted", a)
	}
}

func TestStateVisibilityAndConflicts(t *testing.T) {
	rec := &recorder{}
	st := newState(scope{domain: "cluster.local", namespace: "shop"}, rec)
	st.setService("db", "private", svc("private.db.svc.cluster.local", nil, nil, &serviceRare{exportTo: []string{"."}}))
	st.setService("db", "shared", svc("shared.db.svc.cluster.local", nil, nil, &serviceRare{exportTo: []string{"shop"}}))
	st.setServiceEntry("a/x", &serviceEntry{ns: "a", name: "x", hosts: []string{"x.example.com"}, specAddrs: true, addrs: addrs("192.0.2.1")})
	st.setServiceEntry("b/x", &serviceEntry{ns: "b", name: "x", hosts: []string{"x.example.com"}, specAddrs: true, addrs: addrs("192.0.2.2")})
	st.setServiceEntry("c/hidden", &serviceEntry{ns: "c", name: "hidden", hosts: []string{"hidden.example.com"}, exportTo: []string{"."},
		specAddrs: true, addrs: addrs("192.0.2.3")})
	st.sync()
	got := rec.replaced[0]
	if !slices.Equal(hostsOf(got), []string{"shared.db.svc.cluster.local", "x.example.com"}) {
		t.Fatalf("served %v", hostsOf(got))
	}
	if !slices.Equal(got[1].Addrs, addrs("192.0.2.1")) || !slices.Equal(rec.rejects, []string{"ServiceEntry b/x host_conflict"}) {
		t.Errorf("conflict: served %v, rejects %v", got[1].Addrs, rec.rejects)
	}
}

func TestStateAutoAllocate(t *testing.T) {
	rec := &recorder{}
	st := newState(scope{domain: "cluster.local", autoAllocate: true}, rec)
	st.sync()
	st.setServiceEntry("a/x", &serviceEntry{ns: "a", name: "x", hosts: []string{"x.example.com"}, resolution: apinetworking.ServiceEntry_DNS})
	a := rec.take()
	if len(a) != 1 || len(a[0].upserts[0].Addrs) != 2 {
		t.Fatalf("applies = %+v, want two allocated addresses", a)
	}
	// istiod writes its own allocation into the status: it replaces ours.
	st.setServiceEntry("a/x", &serviceEntry{ns: "a", name: "x", hosts: []string{"x.example.com"}, resolution: apinetworking.ServiceEntry_DNS,
		status: []hostAddr{{host: "x.example.com", addr: addrs("240.240.7.7")[0]}}})
	a = rec.take()
	if len(a) != 1 || !slices.Equal(a[0].upserts[0].Addrs, addrs("240.240.7.7")) {
		t.Fatalf("applies = %+v, want the status address", a)
	}
}

// A WorkloadEntry event rebuilds the hosts of the ServiceEntries that
// select it before or after, and no others; what DNS does not see rebuilds
// nothing.
func TestStateWorkloadEntryRebuildsItsHosts(t *testing.T) {
	rec := &recorder{}
	st := newState(scope{domain: "cluster.local"}, rec)
	static := apinetworking.ServiceEntry_STATIC
	for _, se := range []*serviceEntry{
		{ns: "vm", name: "a", hosts: []string{"a.example.com"}, resolution: static, selector: map[string]string{"app": "a"}},
		{ns: "vm", name: "b", hosts: []string{"b.example.com", "b2.example.com"}, resolution: static, selector: map[string]string{"app": "b"}},
		{ns: "vm", name: "b1", hosts: []string{"b1.example.com"}, resolution: static, selector: map[string]string{"app": "b", "v": "1"}},
		{ns: "vm", name: "all", hosts: []string{"all.example.com"}, resolution: static, selector: map[string]string{}},
		{ns: "other", name: "a", hosts: []string{"a.other.example.com"}, resolution: static, selector: map[string]string{"app": "a"}},
		{ns: "vm", name: "fixed", hosts: []string{"fixed.example.com"}, resolution: static, endpoints: addrs("10.9.0.1")},
	} {
		st.setServiceEntry(se.key(), se)
	}
	st.sync()
	we := func(app, v string, addr string, unhealthy bool) *workloadEntry {
		return &workloadEntry{ns: "vm", name: "w1", labels: map[string]string{"app": app, "v": v}, addr: addrs(addr)[0], unhealthy: unhealthy}
	}
	tests := []struct {
		name  string
		we    *workloadEntry
		asked []string
		addrs map[string][]netip.Addr // what the recorder holds after, for these hosts
	}{
		{"added", we("a", "0", "10.2.0.1", false), []string{"a.example.com", "all.example.com"},
			map[string][]netip.Addr{"a.example.com": addrs("10.2.0.1"), "all.example.com": addrs("10.2.0.1")}},
		{"new version, same labels, address and health", we("a", "0", "10.2.0.1", false), nil, nil},
		{"labels move it", we("b", "1", "10.2.0.1", false),
			[]string{"a.example.com", "all.example.com", "b.example.com", "b1.example.com", "b2.example.com"},
			map[string][]netip.Addr{"a.example.com": nil, "b.example.com": addrs("10.2.0.1"), "b1.example.com": addrs("10.2.0.1")}},
		{"address changes", we("b", "1", "10.2.0.2", false),
			[]string{"all.example.com", "b.example.com", "b1.example.com", "b2.example.com"},
			map[string][]netip.Addr{"b2.example.com": addrs("10.2.0.2"), "all.example.com": addrs("10.2.0.2")}},
		{"unhealthy", we("b", "1", "10.2.0.2", true),
			[]string{"all.example.com", "b.example.com", "b1.example.com", "b2.example.com"},
			map[string][]netip.Addr{"b.example.com": nil, "all.example.com": nil}},
		{"deleted", nil, []string{"all.example.com", "b.example.com", "b1.example.com", "b2.example.com"},
			map[string][]netip.Addr{"b.example.com": nil, "fixed.example.com": addrs("10.9.0.1")}},
	}
	for _, tt := range tests {
		rec.asked = nil
		st.setWorkloadEntry("vm/w1", tt.we)
		slices.Sort(rec.asked)
		if !slices.Equal(rec.asked, tt.asked) {
			t.Errorf("%s: rebuilt %v, want %v", tt.name, rec.asked, tt.asked)
		}
		for h, want := range tt.addrs {
			if got := rec.has[h].Addrs; !slices.Equal(got, want) {
				t.Errorf("%s: %s answers %v, want %v", tt.name, h, got, want)
			}
		}
	}
}

// Random changes to ServiceEntries and WorkloadEntries, applied one by one
// as events, leave the sink with what a state built from scratch from the
// same objects gives: the indexes and the allocation find every host an
// event changes.
func TestStateEventsEqualFullBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	randomLabels := func() map[string]string {
		l := map[string]string{}
		for _, k := range []string{"app", "v"} {
			if rng.IntN(4) > 0 {
				l[k] = pick("a", "b", "1")
			}
		}
		return l
	}
	randomSE := func(ns, name string) *serviceEntry {
		se := &serviceEntry{ns: ns, name: name, created: time.Unix(int64(rng.IntN(3)), 0),
			hosts:      []string{pick("x.example.com", "y.example.com", "z") + map[bool]string{true: "", false: ".example.com"}[rng.IntN(2) == 0]},
			resolution: []apinetworking.ServiceEntry_Resolution{apinetworking.ServiceEntry_STATIC, apinetworking.ServiceEntry_NONE, apinetworking.ServiceEntry_DNS}[rng.IntN(3)],
			ports:      []table.Port{{Name: "http", Number: 80}}}
		if strings.HasPrefix(se.hosts[0], "z") {
			se.hosts[0] = "z." + ns + ".svc.cluster.local"
		}
		switch rng.IntN(5) {
		case 0:
			se.endpoints = addrs("10.9.0.1")
		case 1:
			se.status = []hostAddr{{addr: addrs("240.240.0.9")[0]}}
		default:
			se.selector = randomLabels()
		}
		return se
	}
	for run := range 40 {
		sc := scope{domain: "cluster.local", autoAllocate: run%2 == 1}
		if run%4 == 2 {
			sc.namespace = "vm"
		}
		rec := &recorder{}
		st := newState(sc, rec)
		ses := map[string]*serviceEntry{}
		wes := map[string]*workloadEntry{}
		for step := range 200 {
			if step == 20 {
				st.sync()
			}
			ns := pick("vm", "other")
			if rng.IntN(3) == 0 {
				key := ns + "/se-" + pick("1", "2", "3")
				var se *serviceEntry
				if ses[key] == nil || rng.IntN(3) > 0 {
					se = randomSE(ns, strings.TrimPrefix(key, ns+"/"))
					ses[key] = se
				} else {
					delete(ses, key)
				}
				st.setServiceEntry(key, se)
			} else {
				key := ns + "/we-" + pick("1", "2", "3", "4", "5")
				var we *workloadEntry
				if wes[key] == nil || rng.IntN(4) > 0 {
					we = &workloadEntry{ns: ns, name: strings.TrimPrefix(key, ns+"/"), labels: randomLabels(),
						addr: addrs(pick("10.2.0.1", "10.2.0.2", "10.2.0.3"))[0], unhealthy: rng.IntN(4) == 0}
					wes[key] = we
				} else {
					delete(wes, key)
				}
				st.setWorkloadEntry(key, we)
			}
			if step < 20 {
				continue
			}
			fresh := &recorder{}
			full := newState(sc, fresh)
			for k, se := range ses {
				full.setServiceEntry(k, se)
			}
			for k, we := range wes {
				full.setWorkloadEntry(k, we)
			}
			full.sync()
			if !reflect.DeepEqual(rec.has, fresh.has) {
				t.Fatalf("run %d step %d: events gave\n%v\na full build\n%v", run, step, rec.has, fresh.has)
			}
		}
	}
}

// Entries listed before the initial sync have their addresses at the sync.
func TestStateAutoAllocateAtSync(t *testing.T) {
	rec := &recorder{}
	st := newState(scope{domain: "cluster.local", autoAllocate: true}, rec)
	st.setServiceEntry("a/x", &serviceEntry{ns: "a", name: "x", hosts: []string{"x.example.com"}, resolution: apinetworking.ServiceEntry_DNS})
	if len(rec.applies) != 0 {
		t.Fatalf("sent before the sync: %+v", rec.applies)
	}
	st.sync()
	if got := rec.replaced[0]; len(got) != 1 || len(got[0].Addrs) != 2 {
		t.Fatalf("replace = %+v, want x.example.com with two allocated addresses", got)
	}
}

// The queue of a watch finds in the state what a relist no longer lists,
// and only in the watch's namespace.
func TestKnownObjects(t *testing.T) {
	st := newState(scope{domain: "cluster.local"}, &recorder{})
	st.setService("a", "x", svc("x.a.svc.cluster.local", addrs("10.96.0.1"), nil, nil))
	st.setService("b", "y", svc("y.b.svc.cluster.local", addrs("10.96.0.2"), nil, nil))
	st.setSlice("a/x-1", &endpointSlice{ns: "a", name: "x-1", service: "a/x"})
	for _, tt := range []struct {
		known knownObjects
		want  []string
	}{
		{st.knownServices(""), []string{"a/x", "b/y"}},
		{st.knownServices("a"), []string{"a/x"}},
		{st.knownServices("c"), nil},
		{knownIn(st, "a", st.slices), []string{"a/x-1"}},
		{knownIn(st, "b", st.slices), nil},
	} {
		if got := tt.known.ListKeys(); !slices.Equal(slices.Sorted(slices.Values(got)), tt.want) {
			t.Errorf("namespace %q: keys %v, want %v", tt.known.ns, got, tt.want)
		}
	}
	if obj, ok, _ := st.knownServices("b").GetByKey("b/y"); !ok || obj.(*service).name() != "y" {
		t.Errorf("b/y: %v %v", obj, ok)
	}
	if _, ok, _ := st.knownServices("").GetByKey("a/y"); ok {
		t.Error("a/y found")
	}

	// A relist of namespace a without a/x: a/x is deleted, b/y is left alone.
	q := cache.NewRealFIFOWithOptions(cache.RealFIFOOptions{KnownObjects: st.knownServices("a")})
	if err := q.Replace([]any{svc("z.a.svc.cluster.local", nil, nil, nil)}, "2"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		_, err := q.Pop(func(item any, _ bool) error {
			d := item.(cache.Deltas).Newest()
			key, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(d.Object)
			got = append(got, string(d.Type)+" "+key)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	if want := []string{"Deleted a/x", "Replaced a/z"}; !slices.Equal(got, want) {
		t.Errorf("relist: %v, want %v", got, want)
	}
}
