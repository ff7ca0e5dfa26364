package kubernetes

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
)

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
