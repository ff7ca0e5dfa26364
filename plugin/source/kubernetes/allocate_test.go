package kubernetes

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
)

// allocate is what the allocator gives ses, added in their order.
func allocate(ses []*serviceEntry) map[allocKey][]netip.Addr {
	al := newAllocator()
	for _, se := range ses {
		al.update(nil, se)
	}
	out := map[allocKey][]netip.Addr{}
	for k := range al.wants {
		out[k] = al.addrs(k)
	}
	return out
}

// greedy is the allocation as its definition states it: every want in
// order, oldest first, takes the first position of its sequence that no
// spec, status or older want took. The allocator must always equal it.
func greedy(ses []*serviceEntry, v4slots, v6slots uint64) map[allocKey][2]netip.Addr {
	families := []struct {
		slots uint64
		addr  func(uint64) netip.Addr
		taken map[netip.Addr]bool
	}{{v4slots, addrV4, map[netip.Addr]bool{}}, {v6slots, addrV6, map[netip.Addr]bool{}}}
	var wants []*want
	for _, se := range ses {
		for _, a := range fixedAddrs(se) {
			families[0].taken[a] = true
			families[1].taken[a] = true
		}
		wants = append(wants, slices.Collect(maps.Values(wantsOf(se)))...)
	}
	slices.SortFunc(wants, func(a, b *want) int {
		if a.older(b) {
			return -1
		}
		return 1
	})
	out := map[allocKey][2]netip.Addr{}
	for _, w := range wants {
		var pair [2]netip.Addr
		for i, f := range families {
			for s := range f.slots {
				if a := f.addr((w.at[i].start%f.slots + s) % f.slots); !f.taken[a] {
					f.taken[a] = true
					pair[i] = a
					break
				}
			}
		}
		out[w.key] = pair
	}
	return out
}

// Random changes to the ServiceEntries of a crowded range (8 IPv4 and 5
// IPv6 addresses, so probes collide, pass each other and run out): after
// each, the allocator equals greedy, and every host whose addresses moved is
// among those it reports.
var allocatorRuns = 20

func TestAllocatorEqualsGreedy(t *testing.T) {
	const v4slots, v6slots = 8, 5
	rng := rand.New(rand.NewPCG(1, 2))
	hosts := []string{"a.example.com", "b.example.com", "c.example.com", "*.w.example.com"}
	fixedPool := []netip.Addr{addrV4(0), addrV4(3), addrV4(7), addrV6(1), addrV6(4), netip.MustParseAddr("192.0.2.1")}
	randomSE := func(name string, created time.Time) *serviceEntry {
		se := &serviceEntry{ns: fmt.Sprint("ns", rng.IntN(2)), name: name, created: created, resolution: apinetworking.ServiceEntry_DNS}
		for _, h := range hosts {
			if rng.IntN(3) == 0 {
				se.hosts = append(se.hosts, h)
			}
		}
		if len(se.hosts) == 0 {
			se.hosts = hosts[:1]
		}
		switch rng.IntN(10) {
		case 0:
			se.resolution = apinetworking.ServiceEntry_NONE
		case 1:
			se.resolution = apinetworking.ServiceEntry_DYNAMIC_DNS
		case 2:
			se.specAddrs = true
			se.addrs = []netip.Addr{fixedPool[rng.IntN(len(fixedPool))]}
		case 3, 4:
			se.status = []hostAddr{{host: se.hosts[0], addr: fixedPool[rng.IntN(len(fixedPool))]}}
		case 5:
			se.noAlloc = true
		}
		return se
	}
	for run := range allocatorRuns {
		al := newAllocator()
		al.v4.slots, al.v6.slots = v4slots, v6slots
		ses := map[string]*serviceEntry{}
		before := map[allocKey][2]netip.Addr{}
		for step := range 300 {
			name := fmt.Sprint("se", rng.IntN(12))
			key := ""
			old := (*serviceEntry)(nil)
			for k, se := range ses {
				if se.name == name {
					key, old = k, se
				}
			}
			var se *serviceEntry
			switch {
			case old == nil || rng.IntN(4) == 0:
				// Created, or deleted and created again: a new creation time,
				// often equal to others'.
				se = randomSE(name, time.Unix(int64(rng.IntN(4)), 0))
			case rng.IntN(3) == 0:
				se = nil
			default:
				se = randomSE(name, old.created)
				se.ns = old.ns
			}
			var changed []allocKey
			if old != nil && se != nil && se.ns != old.ns {
				// Another namespace is another object: delete, then create.
				changed = al.update(old, nil)
				delete(ses, key)
				old = nil
			}
			changed = append(changed, al.update(old, se)...)
			if old != nil {
				delete(ses, key)
			}
			if se != nil {
				ses[se.key()] = se
			}
			want := greedy(slices.Collect(maps.Values(ses)), v4slots, v6slots)
			got := map[allocKey][2]netip.Addr{}
			for k, w := range al.wants {
				got[k] = al.pair(w)
			}
			if !maps.Equal(got, want) {
				t.Fatalf("run %d step %d: allocator %v\ngreedy %v", run, step, got, want)
			}
			for k, a := range want {
				if before[k] != a && !slices.Contains(changed, k) {
					t.Fatalf("run %d step %d: %v moved from %v to %v unreported (reported %v)", run, step, k, before[k], a, changed)
				}
			}
			for k := range before {
				if _, ok := want[k]; !ok && !slices.Contains(changed, k) {
					t.Fatalf("run %d step %d: %v gone unreported", run, step, k)
				}
			}
			before = want
		}
	}
}

var (
	v4Range = netip.MustParsePrefix("240.240.0.0/16")
	v6Range = netip.MustParsePrefix("2001:2::/48")
)

func TestAllocateEligibility(t *testing.T) {
	dns, none, dyn := apinetworking.ServiceEntry_DNS, apinetworking.ServiceEntry_NONE, apinetworking.ServiceEntry_DYNAMIC_DNS
	ses := []*serviceEntry{
		{ns: "a", name: "dns", hosts: []string{"api.example.com", "*.wild.example.com"}, resolution: dns},
		{ns: "a", name: "dyn", hosts: []string{"*.dyn.example.com"}, resolution: dyn},
		{ns: "a", name: "none", hosts: []string{"none.example.com"}, resolution: none},
		{ns: "a", name: "spec", hosts: []string{"spec.example.com"}, resolution: dns, specAddrs: true},
		{ns: "a", name: "optout", hosts: []string{"optout.example.com"}, resolution: dns, noAlloc: true},
		{ns: "a", name: "status", hosts: []string{"status.example.com", "other.example.com"}, resolution: dns,
			status: []hostAddr{{host: "status.example.com", addr: netip.MustParseAddr("240.240.0.1")}}},
	}
	got := allocate(ses)
	want := []allocKey{{"a/dns", "api.example.com"}, {"a/dyn", "*.dyn.example.com"}, {"a/status", "other.example.com"}}
	if len(got) != len(want) {
		t.Errorf("allocated %v, want keys %v", got, want)
	}
	for _, k := range want {
		a := got[k]
		if len(a) != 2 || !v4Range.Contains(a[0]) || !v6Range.Contains(a[1]) {
			t.Errorf("%v: got %v, want one address from each range", k, a)
		}
	}
}

// Allocations are a function of the entries only: the same everywhere, in any
// order, and an older entry keeps its address when others come and go.
func TestAllocateStable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var ses []*serviceEntry
	for i := range 3000 {
		ses = append(ses, &serviceEntry{ns: "ns", name: fmt.Sprint("se", i), created: t0.Add(time.Duration(i) * time.Second),
			hosts: []string{fmt.Sprintf("h%d.example.com", i)}, resolution: apinetworking.ServiceEntry_DNS})
	}
	all := allocate(ses)
	seen := map[netip.Addr]bool{}
	for k, a := range all {
		for _, x := range a {
			if seen[x] || x == netip.MustParseAddr("240.240.0.0") || x == netip.MustParseAddr("240.240.255.255") {
				t.Fatalf("%v: address %v reused or reserved", k, x)
			}
			seen[x] = true
		}
	}
	reversed := make([]*serviceEntry, len(ses))
	for i, se := range ses {
		reversed[len(ses)-1-i] = se
	}
	for k, a := range allocate(reversed) {
		if all[k][0] != a[0] || all[k][1] != a[1] {
			t.Fatalf("%v: %v in one order, %v in another", k, all[k], a)
		}
	}
	// Dropping the newest half moves no one; dropping a random old one moves
	// at most the entries that probed past it.
	for k, a := range allocate(ses[:1500]) {
		if all[k][0] != a[0] {
			t.Fatalf("%v moved from %v to %v when newer entries left", k, all[k], a)
		}
	}
}

func TestAllocateAvoidsStatusAddresses(t *testing.T) {
	se := &serviceEntry{ns: "ns", name: "x", hosts: []string{"x.example.com"}, resolution: apinetworking.ServiceEntry_DNS}
	first := allocate([]*serviceEntry{se})[allocKey{"ns/x", "x.example.com"}]
	// Another entry holds that address in its status: x must move.
	other := &serviceEntry{ns: "ns", name: "y", hosts: []string{"y.example.com"}, resolution: apinetworking.ServiceEntry_DNS,
		status: []hostAddr{{host: "y.example.com", addr: first[0]}, {host: "y.example.com", addr: first[1]}}}
	got := allocate([]*serviceEntry{se, other})[allocKey{"ns/x", "x.example.com"}]
	if got[0] == first[0] || got[1] == first[1] || !v4Range.Contains(got[0]) || !v6Range.Contains(got[1]) {
		t.Errorf("got %v, want addresses other than %v", got, first)
	}
}

func TestAllocationIndex(t *testing.T) {
	for _, n := range []uint64{0, 1, 255, 256, v4Slots - 1} {
		if got, ok := indexV4(addrV4(n)); !ok || got != n {
			t.Errorf("IPv4 position %d: index %d %v", n, got, ok)
		}
	}
	for _, n := range []uint64{0, 1, 1 << 40, 1<<64 - 2} {
		if got, ok := indexV6(addrV6(n)); !ok || got != n {
			t.Errorf("IPv6 position %d: index %d %v", n, got, ok)
		}
	}
	for _, a := range []string{"240.240.0.0", "240.240.255.255", "240.241.0.1", "10.0.0.1", "2001:2::", "2001:3::1", "::ffff:240.240.0.1"} {
		x := netip.MustParseAddr(a)
		_, ok4 := indexV4(x)
		_, ok6 := indexV6(x)
		if ok4 || ok6 {
			t.Errorf("%s: in a range (%v %v)", a, ok4, ok6)
		}
	}
}
