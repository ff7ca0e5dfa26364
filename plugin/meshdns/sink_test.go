package meshdns

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// What a source or the table leaves out is counted (and logged) when it is
// first left out, not again while each full state or update still leaves it
// out the same way; once served or gone, it counts anew.
func TestSinkReportsSkippedOnce(t *testing.T) {
	m := &MeshDNS{table: table.New(table.Config{Domain: "cluster.local", TTL: 30})}
	m.addSource(namedSource("sink-test"))
	s := m.sources[0]
	count := func(reason string) float64 { return counterValue(t, rejected, s.name, reason) }
	good := table.Entry{Host: "ok.example", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	loop := []table.Entry{{Host: "a.example", Target: "b.example"}, {Host: "b.example", Target: "a.example"}}
	bad := []source.Rejection{{Object: "x.example", Reason: "invalid_address", Err: errors.New("ips: bad")}}

	steps := []struct {
		name       string
		do         func()
		loops, ips float64 // counts after the step
	}{
		{"first full state", func() { s.Replace(append([]table.Entry{good}, loop...), bad) }, 2, 1},
		{"the same again", func() { s.Replace(append([]table.Entry{good}, loop...), bad) }, 2, 1},
		{"another error for the same entry", func() {
			s.Replace(append([]table.Entry{good}, loop...), []source.Rejection{{Object: "x.example", Reason: "invalid_address", Err: errors.New("ips: worse")}})
		}, 2, 2},
		{"the loop gone, then back", func() {
			s.Replace([]table.Entry{good}, nil)
			s.Replace(append([]table.Entry{good}, loop...), nil)
		}, 4, 2},
		{"an update of another entry", func() { s.Apply([]table.Entry{good}, nil) }, 4, 2},
		{"an update closing the loop, twice", func() {
			s.Apply(loop[1:], nil) // a is not served: accepted
			s.Apply(loop[:1], nil) // a -> b -> a: refused
			s.Apply(loop[:1], nil) // the same again
		}, 5, 2},
		{"fixed, then broken again", func() {
			s.Apply([]table.Entry{{Host: "b.example", Addrs: good.Addrs}}, nil)
			s.Apply(loop[:1], nil) // served now: b has no target
			s.Apply(loop[1:], nil) // b -> a -> b: refused
		}, 6, 2},
	}
	for _, st := range steps {
		st.do()
		if l, i := count("cname_loop"), count("invalid_address"); l != st.loops || i != st.ips {
			t.Fatalf("%s: cname_loop %v, invalid_address %v; want %v, %v", st.name, l, i, st.loops, st.ips)
		}
	}
}

type namedSource string

func (n namedSource) Name() string                           { return string(n) }
func (namedSource) Start(context.Context, source.Sink) error { return nil }

// capture off: a ServiceEntry host with only auto-allocated VIPs is not
// served, any other host is, VIPs and all; capture on (the default) serves
// them all.
func TestCaptureOff(t *testing.T) {
	ip := netip.MustParseAddr
	es := []table.Entry{
		{Host: "vip.example", Addrs: []netip.Addr{ip("240.240.0.5"), ip("2001:2::5")}},
		{Host: "mixed.example", Addrs: []netip.Addr{ip("240.240.0.6"), ip("192.0.2.6")}},
		{Host: "spec.example", Addrs: []netip.Addr{ip("192.0.2.7")}},
		{Host: "svc.ns.svc.cluster.local", Registry: table.Kubernetes, Addrs: []netip.Addr{ip("240.240.0.8")}},
	}
	for _, tc := range []struct {
		block  string
		served []string
	}{
		{"meshdns {\nfile testdata/setup.json\n}", []string{"vip.example", "mixed.example", "spec.example", "svc.ns.svc.cluster.local"}},
		{"meshdns {\nfile testdata/setup.json\ncapture on\n}", []string{"vip.example", "mixed.example", "spec.example", "svc.ns.svc.cluster.local"}},
		{"meshdns {\nfile testdata/setup.json\ncapture off\n}", []string{"mixed.example", "spec.example", "svc.ns.svc.cluster.local"}},
	} {
		c := caddy.NewTestController("dns", tc.block)
		c.ServerBlockKeys = []string{"."}
		m, err := parse(c)
		if err != nil {
			t.Fatal(err)
		}
		m.sources[0].Replace(es, nil)
		var served []string
		for _, e := range m.table.Entries(m.sources[0].id) {
			served = append(served, e.Host)
			if e.Host == "mixed.example" && len(e.Addrs) != 2 {
				t.Errorf("%s: mixed.example has %v", tc.block, e.Addrs)
			}
		}
		slices.Sort(served)
		want := slices.Sorted(slices.Values(tc.served))
		if !slices.Equal(served, want) {
			t.Errorf("%s: served %v, want %v", tc.block, served, want)
		}
	}
	if len(es[0].Addrs) != 2 {
		t.Error("the source's entries were changed")
	}
	c := caddy.NewTestController("dns", "meshdns {\nfile testdata/setup.json\ncapture maybe\n}")
	if _, err := parse(c); err == nil || !strings.Contains(err.Error(), "capture: want on or off") {
		t.Errorf("capture maybe: %v", err)
	}
}
