package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// The model is every write this program made to each WorkloadEntry, with
// the instants it was issued and returned; answers are judged against it.
//
// One goroutine makes all of a WorkloadEntry's writes in a phase, each
// issued after the previous one returned, so a WorkloadEntry has at most one
// write in flight. The API server applies a write at some instant between
// its issue and its return: while it is in flight, the WorkloadEntry is in
// the state before it or in the state after it.

// weState is a WorkloadEntry as a write leaves it.
type weState struct {
	host     int  // the ServiceEntry host its app label selects it into; -1: absent (not created, or deleted)
	servable bool // true without the health annotation; with it, only while its Healthy condition is "True"
}

var absent = weState{host: -1}

// serves reports whether a WorkloadEntry in state s gives host its address;
// healthBlind treats it as a server that ignores health would.
func (s weState) serves(host int, healthBlind bool) bool {
	return s.host == host && (s.servable || healthBlind)
}

type write struct {
	issued, returned time.Time // returned is zero while the write is in flight
	to               weState
}

type model struct {
	mu      sync.Mutex
	start   time.Time // before any write
	hist    [][]write // by WorkloadEntry
	members [][]int   // by host: every WorkloadEntry any write put into it, each once

	// The phase under way: its operations not returned yet that touch each
	// host, when each host's last one returned, and the hosts whose
	// operations have all returned, each sent once.
	pending []int
	touched []bool // by an operation of the phase
	settled []time.Time
	ready   chan int
}

func newModel(hosts, wes int) *model {
	return &model{start: time.Now(), hist: make([][]write, wes), members: make([][]int, hosts)}
}

// beginPhase starts the bookkeeping of a phase whose operations touch the
// hosts in touches (one list per operation). It returns the channel on which
// each host is sent once all of its operations have returned; hosts no
// operation touches are sent at once.
func (m *model) beginPhase(touches [][]int) <-chan int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.members)
	m.pending, m.settled, m.ready = make([]int, n), make([]time.Time, n), make(chan int, n)
	m.touched = make([]bool, n)
	for _, hosts := range touches {
		for _, h := range hosts {
			m.pending[h]++
			m.touched[h] = true
		}
	}
	now := time.Now()
	for h, p := range m.pending {
		if p == 0 {
			m.settled[h] = now
			m.ready <- h
		}
	}
	return m.ready
}

// opDone records that an operation touching hosts returned.
func (m *model) opDone(hosts []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for _, h := range hosts {
		if m.pending[h]--; m.pending[h] == 0 {
			m.settled[h] = now
			m.ready <- h
		}
	}
}

// touchedInPhase reports whether an operation of the phase touches host.
func (m *model) touchedInPhase(host int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.touched[host]
}

// settledAt returns when the last operation of the phase touching host
// returned (or the phase began, if none did).
func (m *model) settledAt(host int) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settled[host]
}

// issue records a write of WorkloadEntry j that leaves it in state to,
// about to be sent.
func (m *model) issue(j int, to weState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hist[j] = append(m.hist[j], write{issued: time.Now(), to: to})
	if to.host >= 0 && !slices.Contains(m.members[to.host], j) {
		m.members[to.host] = append(m.members[to.host], j)
	}
}

// done records that the last write of j returned successfully.
func (m *model) done(j int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hist[j]
	h[len(h)-1].returned = time.Now()
}

// current returns the state j's last write left it in.
func (m *model) current(j int) weState {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.hist[j]; len(h) > 0 {
		return h[len(h)-1].to
	}
	return absent
}

// final returns the sorted addresses host has once every write made so far
// is applied.
func (m *model) final(host int) []netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []netip.Addr
	for _, j := range m.members[host] {
		if h := m.hist[j]; h[len(h)-1].to.serves(host, false) {
			out = append(out, weAddr(j))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// verdict is how an answer compares with the sets its host had.
type verdict int

const (
	current verdict = iota // the host's set at some instant while the query was out
	lagging                // not current, but the host's set at some instant before the query was sent
	wrong                  // the host's set at no instant of the run up to the answer's arrival
)

// judge classifies an answer for host: addrs are its A records (none for
// NXDOMAIN or NODATA), sent and recv when the query left and the answer
// arrived.
//
// The host's set at an instant t is the addresses of the WorkloadEntries
// whose state at t serves it; a WorkloadEntry with a write in flight at t
// may be in either state (the model's comment). An answer is:
//
//   - current if it is a possible set of the host at some instant from sent
//     to recv;
//   - lagging if it is not current but is a possible set at some instant
//     after the run began and before sent: the host had that set, and the
//     server has not caught up yet. behind is from the last such instant to
//     sent;
//   - wrong otherwise: the host had that set at no instant before the answer
//     arrived. An address that is no WorkloadEntry's, or that appears twice,
//     is wrong, and so is a combination of addresses the host never had at
//     once.
//
// A server whose answer is the host's set in some state the API server was
// in before the answer left is never judged wrong. The possible sets are
// judged WorkloadEntry by WorkloadEntry (one with a write in flight may be
// either way independently of another's), so a combination that could only
// arise from writes applied out of the order the API server applied them
// is not caught.
//
// With healthBlind, servable is ignored: the verdict a server that does not
// know health would get.
func (m *model) judge(host int, addrs []netip.Addr, sent, recv time.Time, healthBlind bool) (v verdict, behind time.Duration, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := map[int]bool{}
	for _, a := range addrs {
		j, ok := weIndex(a, len(m.hist))
		switch {
		case !ok:
			return wrong, 0, fmt.Sprintf("%s is no WorkloadEntry's address", a)
		case in[j]:
			return wrong, 0, fmt.Sprintf("%s twice", a)
		case !slices.Contains(m.members[host], j):
			return wrong, 0, fmt.Sprintf("%s (%s) was never written into this host", a, weName(j))
		}
		in[j] = true
	}
	relevant := m.members[host]
	// The set is possible on a union of closed intervals, whose ends are
	// among the instants the relevant writes were issued or returned: it is
	// possible somewhere in [sent, recv] iff at sent or at one of those
	// instants inside.
	points := []time.Time{m.start, sent, recv}
	for _, j := range relevant {
		for _, w := range m.hist[j] {
			if w.issued.After(recv) {
				break
			}
			points = append(points, w.issued)
			if !w.returned.IsZero() && !w.returned.After(recv) {
				points = append(points, w.returned)
			}
		}
	}
	var last time.Time // the last instant before sent where the set is possible
	for _, t := range points {
		early := t.Before(sent)
		if t.After(recv) || (early && !t.After(last)) || !m.possibleAt(host, relevant, in, t, healthBlind) {
			continue
		}
		if !early {
			return current, 0, ""
		}
		last = t
	}
	if !last.IsZero() {
		return lagging, sent.Sub(last), ""
	}
	return wrong, 0, m.describe(host, in, recv)
}

// possibleAt reports whether, at instant t, each WorkloadEntry in relevant
// may serve host exactly if it is in in.
func (m *model) possibleAt(host int, relevant []int, in map[int]bool, t time.Time, healthBlind bool) bool {
	for _, j := range relevant {
		want := in[j]
		h := m.hist[j]
		k := -1 // j's last write issued at or before t
		for k+1 < len(h) && !h[k+1].issued.After(t) {
			k++
		}
		if k < 0 {
			if want {
				return false // not created yet
			}
			continue
		}
		if h[k].to.serves(host, healthBlind) == want {
			continue
		}
		inFlight := h[k].returned.IsZero() || !h[k].returned.Before(t)
		before := absent
		if k > 0 {
			before = h[k-1].to
		}
		if !inFlight || before.serves(host, healthBlind) != want {
			return false
		}
	}
	return true
}

// describe says, for a wrong answer's log, which WorkloadEntries it had and
// what the writes of the host's WorkloadEntries issued before recv were.
func (m *model) describe(host int, in map[int]bool, recv time.Time) string {
	var got []string
	for j := range in {
		got = append(got, weName(j))
	}
	slices.Sort(got)
	var hist []string
	for _, j := range m.members[host] {
		var ws []string
		for _, w := range m.hist[j] {
			if w.issued.After(recv) {
				break
			}
			ret := "in flight"
			if !w.returned.IsZero() {
				ret = w.returned.Format("15:04:05.000000")
			}
			ws = append(ws, fmt.Sprintf("{host %d servable %v, %s–%s}", w.to.host, w.to.servable, w.issued.Format("15:04:05.000000"), ret))
		}
		if len(ws) > 0 {
			hist = append(hist, weName(j)+" "+strings.Join(ws, " "))
		}
	}
	return fmt.Sprintf("answered [%s]; writes issued before the answer arrived: %s", strings.Join(got, " "), strings.Join(hist, "; "))
}

// WorkloadEntry j has the address weBase+j, unique, never reused.
const weBase = 0x0a800000 // 10.128.0.0: 2^23 addresses

func weAddr(j int) netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], weBase+uint32(j))
	return netip.AddrFrom4(a)
}

func weIndex(a netip.Addr, n int) (int, bool) {
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	j := int(binary.BigEndian.Uint32(b[:])) - weBase
	return j, j >= 0 && j < n
}
