package kubernetes

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshdns/meshdns/plugin/table"
)

// The benchmarks here set each layout trick of the source beside the plain
// Go it replaces, at 100k Services as BenchmarkServiceMemory makes them
// (benchService). The memory ones report the live heap of each side, the
// Get one the time of a get (ns/op):
//
//	go test -run '^$' -bench 'Trick.*Memory' -benchtime 1x -count 5 ./plugin/source/kubernetes/
//	go test -run '^$' -bench TrickServiceSetGet -count 5 ./plugin/source/kubernetes/

const trickServices = 100_000

// heapOf returns the live heap that what build returns keeps.
func heapOf(build func() any) uint64 {
	base := heapBytes()
	x := build()
	after := heapBytes()
	runtime.KeepAlive(x)
	return after - base
}

// heapOfEach returns the live heap that f(i) keeps, for i up to
// trickServices, not counting the slice that holds them.
func heapOfEach(f func(i int) any) uint64 {
	out := make([]any, trickServices)
	base := heapBytes()
	for i := range out {
		out[i] = f(i)
	}
	after := heapBytes()
	runtime.KeepAlive(out)
	return after - base
}

func reportHeap(b *testing.B, bytes uint64) {
	b.ReportMetric(float64(bytes)/(1<<20)*100_000/trickServices, "MiB/100k")
	b.ReportMetric(float64(bytes)/trickServices, "B/svc")
}

// trickServiceList converts trickServices Services as the watch does.
func trickServiceList() []*service {
	out := make([]*service, trickServices)
	for i := range out {
		obj, err := serviceTransform("cluster.local")(benchService(i))
		if err != nil {
			panic(err)
		}
		out[i] = obj.(*service)
	}
	return out
}

// mapServiceSet is the plain Go for serviceSet: a map keyed by the
// Service's own nameNS, which is a substring of its id and so no copy.
type mapServiceSet map[string]*service

func (m mapServiceSet) get(key string) *service { return m[key] }
func (m mapServiceSet) put(s *service)          { m[s.nameNS()] = s }
func (m mapServiceSet) del(key string)          { delete(m, key) }

// The plain map holds what a serviceSet holds, through random puts and
// deletes: the benchmarks compare like with like.
func TestMapServiceSetMatches(t *testing.T) {
	set, m := newServiceSet(), mapServiceSet{}
	rnd := rand.New(rand.NewPCG(1, 2))
	for step := range 5000 {
		name, ns := "svc-"+strconv.Itoa(rnd.IntN(300)), "ns-"+strconv.Itoa(rnd.IntN(3))
		if rnd.IntN(3) == 0 {
			set.del(name + "." + ns)
			m.del(name + "." + ns)
		} else {
			s := newService(name, ns, strconv.Itoa(step), nil, nil, nil)
			set.put(s)
			m.put(s)
		}
		if set.n != len(m) {
			t.Fatalf("step %d: %d in the set, %d in the map", step, set.n, len(m))
		}
	}
	for k, s := range m {
		if set.get(k) != s {
			t.Fatalf("%s differs", k)
		}
	}
}

// BenchmarkTrickServiceSetMemory sets serviceSet beside a Go map: the live
// heap of each, the Services apart.
func BenchmarkTrickServiceSetMemory(b *testing.B) {
	svcs := trickServiceList()
	for _, v := range []struct {
		name string
		make func() any
	}{
		{"set", func() any { return newTrickSet(svcs) }},
		{"map", func() any { return newTrickMap(svcs) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			var n uint64
			for range b.N {
				n = heapOf(v.make)
			}
			reportHeap(b, n)
		})
	}
	runtime.KeepAlive(svcs)
}

// BenchmarkTrickServiceSetGet sets a serviceSet's get beside a Go map's, of
// keys present, in no order.
func BenchmarkTrickServiceSetGet(b *testing.B) {
	svcs := trickServiceList()
	// Lookups come with their own key strings, as from a host.
	keys := make([]string, len(svcs))
	for i, j := range rand.New(rand.NewPCG(3, 4)).Perm(len(svcs)) {
		keys[i] = strings.Clone(svcs[j].nameNS())
	}
	bench := func(get func(string) *service) func(b *testing.B) {
		return func(b *testing.B) {
			i := 0
			for b.Loop() {
				if get(keys[i]) == nil {
					b.Fatal(keys[i])
				}
				if i++; i == len(keys) {
					i = 0
				}
			}
		}
	}
	b.Run("set", bench(newTrickSet(svcs).get))
	b.Run("map", bench(newTrickMap(svcs).get))
}

func newTrickSet(svcs []*service) *serviceSet {
	m := newServiceSet()
	for _, s := range svcs {
		m.put(s)
	}
	return m
}

func newTrickMap(svcs []*service) mapServiceSet {
	m := mapServiceSet{}
	for _, s := range svcs {
		m.put(s)
	}
	return m
}

// serviceWithPortSlice is service with its ports as a slice.
type serviceWithPortSlice struct {
	apiObject
	id      string
	addr    [16]byte
	ports   []table.Port
	rare    *serviceRare
	idLen   uint8
	addrLen uint8
}

func withPortSlice(s *service, ps []table.Port) *serviceWithPortSlice {
	return &serviceWithPortSlice{id: s.id, addr: s.addr, ports: ps, rare: s.rare, idLen: s.idLen, addrLen: s.addrLen}
}

// copiedPorts is the port list convertService makes for s, before it is
// shared: the Service's own, with its own names.
func copiedPorts(s *corev1.Service) []table.Port {
	var ps []table.Port
	for _, p := range s.Spec.Ports {
		ps = append(ps, table.Port{Name: strings.ToLower(p.Name), Number: uint16(p.Port), Protocol: table.TCP})
	}
	sortPorts(ps)
	return ps
}

func convertedService(api *corev1.Service) *service {
	s, err := convertService(api, "cluster.local")
	if err != nil {
		panic(err)
	}
	return s
}

// runHeapEach runs the sub-benchmark name, which reports the live heap of
// f(i) for trickServices values of i.
func runHeapEach(b *testing.B, name string, f func(i int) any) {
	b.Run(name, func(b *testing.B) {
		var n uint64
		for range b.N {
			n = heapOfEach(f)
		}
		reportHeap(b, n)
	})
}

// BenchmarkTrickPortsMemory sets the shared port lists (portLists.intern, a
// pointer in the Service) beside a list of its own in each Service, and
// beside the shared list behind a slice header, which tells the two parts
// apart. The sides keep the same Services but for their ports.
//
// The table keeps the list it is given, so a list of its own is the
// table's too: BenchmarkServiceMemory counts the header in the source and
// the list in the table, here both count.
func BenchmarkTrickPortsMemory(b *testing.B) {
	runHeapEach(b, "shared-pointer", func(i int) any { return convertedService(benchService(i)) })
	runHeapEach(b, "shared-slice", func(i int) any {
		s := convertedService(benchService(i))
		return withPortSlice(s, s.portList())
	})
	runHeapEach(b, "own-slice", func(i int) any {
		api := benchService(i)
		return withPortSlice(convertedService(api), copiedPorts(api))
	})
}

// plainStruct is service as plain Go would write it: a string for each of
// name, namespace and version, and the ClusterIPs and ports as slices.
type plainStruct struct {
	name, ns, version string
	addrs             []netip.Addr
	ports             []table.Port
	rare              *serviceRare
}

func plainStructOf(s *service) *plainStruct {
	return &plainStruct{
		name: strings.Clone(s.name()), ns: strings.Clone(s.namespace()), version: strings.Clone(s.version()),
		addrs: s.addrs(), ports: s.portList(), rare: s.rare,
	}
}

// BenchmarkTrickSlimMemory sets the Services the transforms keep (slim)
// beside the same fields in a plain struct (plain) and beside the API
// objects a store without transforms keeps (api), as benchService makes
// them: a lean Service, without labels, annotations or managed fields.
func BenchmarkTrickSlimMemory(b *testing.B) {
	runHeapEach(b, "slim", func(i int) any { return convertedService(benchService(i)) })
	runHeapEach(b, "plain", func(i int) any { return plainStructOf(convertedService(benchService(i))) })
	runHeapEach(b, "api", func(i int) any { return benchService(i) })
}
