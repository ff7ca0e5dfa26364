package main

import (
	"net/netip"
	"testing"
	"time"
)

// TestJudge checks model.judge on histories with explicit instants: t(n)
// is n seconds after the model's start.
func TestJudge(t *testing.T) {
	m := newModel(2, 4)
	at := func(n float64) time.Time { return m.start.Add(time.Duration(n * float64(time.Second))) }
	add := func(j int, issued, returned float64, to weState) {
		m.hist[j] = append(m.hist[j], write{issued: at(issued), returned: at(returned), to: to})
		if to.host >= 0 {
			m.members[to.host] = append(m.members[to.host], j)
		}
	}
	in := func(host int) weState { return weState{host: host, servable: true} }
	// we-0: created in host 0 over [1,2], moved to host 1 over [10,11].
	add(0, 1, 2, in(0))
	add(0, 10, 11, in(1))
	// we-1: created in host 0 over [3,4], deleted over [5,6].
	add(1, 3, 4, in(0))
	add(1, 5, 6, absent)
	// we-2: created in host 0 over [7,8].
	add(2, 7, 8, in(0))
	// we-3: created annotated, without a condition, in host 1 over [1,2];
	// Healthy True over [3,4]; the second write is still in flight.
	add(3, 1, 2, weState{host: 1})
	m.hist[3] = append(m.hist[3], write{issued: at(3), to: in(1)})

	for _, c := range []struct {
		name        string
		host        int
		wes         []int
		sent, recv  float64
		healthBlind bool
		want        verdict
		behind      float64
	}{
		{"nothing before the first create", 0, nil, 0.5, 0.6, false, current, 0},
		{"a create in flight: either", 0, nil, 1.5, 1.6, false, current, 0},
		{"the same, applied", 0, []int{0}, 1.5, 1.6, false, current, 0},
		{"a create returned, not served yet", 0, nil, 2.5, 2.6, false, lagging, 0.5},
		{"not created until after the answer", 0, []int{0}, 0.2, 0.9, false, wrong, 0},
		{"issued after the answer arrived", 0, []int{2}, 6.5, 6.9, false, wrong, 0},
		{"both", 0, []int{0, 1}, 4.5, 4.6, false, current, 0},
		{"the first only, the second's create returned", 0, []int{0}, 4.5, 4.6, false, lagging, 0.5},
		{"deleted, still served", 0, []int{0, 1}, 6.5, 6.6, false, lagging, 0.5},
		{"never together: deleted before the next create", 0, []int{0, 1, 2}, 8.5, 8.6, false, wrong, 0},
		{"after the delete, before the create's return", 0, []int{0}, 6.5, 6.6, false, current, 0},
		{"the final set", 0, []int{0, 2}, 8.5, 8.6, false, current, 0},
		{"moved away, still in the old host", 0, []int{0, 2}, 12, 12.1, false, lagging, 1},
		{"moved in", 1, []int{0}, 12, 12.1, false, current, 0},
		{"not moved in yet", 1, nil, 12, 12.1, false, lagging, 1},
		{"moved into the other host only", 1, []int{0}, 9, 9.5, false, wrong, 0},
		{"annotated without a condition, served", 1, []int{3}, 2.5, 2.6, false, wrong, 0},
		{"the same, health-blind", 1, []int{3}, 2.5, 2.6, true, current, 0},
		{"Healthy True in flight", 1, []int{3}, 3.5, 3.6, false, current, 0},
		{"Healthy True in flight, not yet", 1, nil, 3.5, 3.6, false, current, 0},
	} {
		var addrs []netip.Addr
		for _, j := range c.wes {
			addrs = append(addrs, weAddr(j))
		}
		v, behind, why := m.judge(c.host, addrs, at(c.sent), at(c.recv), c.healthBlind)
		if v != c.want || behind != time.Duration(c.behind*float64(time.Second)) {
			t.Errorf("%s: verdict %d behind %s (%s), want %d behind %gs", c.name, v, behind, why, c.want, c.behind)
		}
	}

	for _, c := range []struct {
		name  string
		addrs []netip.Addr
	}{
		{"twice", []netip.Addr{weAddr(0), weAddr(0)}},
		{"foreign", []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
		{"beyond the WorkloadEntries", []netip.Addr{weAddr(4)}},
		{"never in this host", []netip.Addr{weAddr(3)}},
	} {
		if v, _, _ := m.judge(0, c.addrs, at(20), at(21), false); v != wrong {
			t.Errorf("%s: verdict %d, want wrong", c.name, v)
		}
	}
}

// TestPhase checks that a host is ready once every operation touching it
// returned, and a host no operation touches at once.
func TestPhase(t *testing.T) {
	m := newModel(3, 0)
	ready := m.beginPhase([][]int{{0}, {0, 1}})
	if h := <-ready; h != 2 {
		t.Fatalf("ready %d first, want 2", h)
	}
	m.opDone([]int{0, 1})
	if h := <-ready; h != 1 {
		t.Fatalf("ready %d, want 1", h)
	}
	select {
	case h := <-ready:
		t.Fatalf("ready %d with an operation on it not returned", h)
	default:
	}
	m.opDone([]int{0})
	if h := <-ready; h != 0 {
		t.Fatalf("ready %d, want 0", h)
	}
}
