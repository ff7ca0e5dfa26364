package kubernetes

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
)

// allocKey is one host of one ServiceEntry ("ns/name").
type allocKey struct{ se, host string }

// The ranges istiod allocates from: 240.240.0.0/16 and 2001:2::/48.
var (
	allocV4 = netip.MustParseAddr("240.240.0.0").As4()
	allocV6 = netip.MustParseAddr("2001:2::").As16()
)

// v4Slots excludes 240.240.0.0 and 240.240.255.255.
const v4Slots = 1<<16 - 2

// allocator gives every ServiceEntry host that nothing gave an address (no
// spec.addresses, no status.addresses) one IPv4 and one IPv6 address, as
// istiod's auto-allocation does. Eligibility is istiod's: not for resolution
// NONE, not when opted out by label, wildcard hosts only with DYNAMIC_DNS.
//
// An address is a hash of namespace/name/host, so every node computes the
// same one without talking to the others. On a collision, with an older
// allocation or with any address in a spec or status, the next address is
// probed (linear probing). The result is that of placing the hosts one by
// one, oldest entry first, into the addresses the specs and statuses leave:
// a function of the entries alone, in which an older entry never moves for
// a newer one. The allocator keeps that result as entries change, moving
// only the hosts whose probe paths a change crosses: an event costs what it
// touches, not the size of the mesh.
type allocator struct {
	v4, v6 family
	wants  map[allocKey]*want
	// moved holds, for each want placed elsewhere since the last call to
	// changed, its addresses before.
	moved map[*want][2]netip.Addr
}

// want is one host that needs addresses.
type want struct {
	key      allocKey
	ns, name string
	created  time.Time
	at       [2]probe // IPv4, IPv6
}

// probe is where a want is in one family's probe sequence.
type probe struct {
	start  uint64 // the hash: the first position probed
	steps  uint64 // the want holds, or next tries, position start+steps
	placed bool
}

// older orders wants as the allocation serves them: entries oldest first,
// then hosts by name.
func (w *want) older(o *want) bool {
	return cmp.Or(w.created.Compare(o.created), strings.Compare(w.ns, o.ns), strings.Compare(w.name, o.name),
		strings.Compare(w.key.host, o.key.host)) < 0
}

// family is the allocation in one address family. Its invariant, which
// makes it equal to placing every want in order: a placed want holds the
// first position of its sequence that is not fixed and not held by an
// older want; every position before is, and lists the want in passing.
type family struct {
	i        int                             // index into want.at
	addr     func(uint64) netip.Addr         // the address at a position
	index    func(netip.Addr) (uint64, bool) // the position of an address
	slots    uint64
	fixed    map[netip.Addr]int   // spec and status addresses, counted
	holder   map[netip.Addr]*want // the want each allocated address is given to
	passing  map[netip.Addr]map[*want]struct{}
	unplaced map[*want]struct{} // found every position taken (IPv4 only: 65,534 of them)
	moved    func(*want)        // called before a want's addresses change
}

func newAllocator() *allocator {
	al := &allocator{wants: map[allocKey]*want{}, moved: map[*want][2]netip.Addr{}}
	al.v4 = newFamily(0, addrV4, indexV4, v4Slots, al.move)
	al.v6 = newFamily(1, addrV6, indexV6, 1<<64-1, al.move)
	return al
}

func newFamily(i int, addr func(uint64) netip.Addr, index func(netip.Addr) (uint64, bool), slots uint64, moved func(*want)) family {
	return family{i: i, addr: addr, index: index, slots: slots, moved: moved,
		fixed: map[netip.Addr]int{}, holder: map[netip.Addr]*want{},
		passing: map[netip.Addr]map[*want]struct{}{}, unplaced: map[*want]struct{}{}}
}

func (al *allocator) move(w *want) {
	if _, ok := al.moved[w]; !ok {
		al.moved[w] = al.pair(w)
	}
}

// pair is a want's addresses; the zero address where it has none.
func (al *allocator) pair(w *want) [2]netip.Addr {
	var out [2]netip.Addr
	for i, f := range []*family{&al.v4, &al.v6} {
		if p := w.at[i]; p.placed {
			out[i] = f.pos(&p, p.steps)
		}
	}
	return out
}

// addrs are the addresses allocated to key: IPv4 then IPv6, or none.
func (al *allocator) addrs(key allocKey) []netip.Addr {
	w := al.wants[key]
	if w == nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range al.pair(w) {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// update replaces the ServiceEntry old with new (either may be nil) and
// returns the keys whose addresses changed, old's and new's included.
func (al *allocator) update(old, new *serviceEntry) []allocKey {
	oldWants, newWants := wantsOf(old), wantsOf(new)
	for k, w := range oldWants {
		if nw, ok := newWants[k]; (!ok || !nw.created.Equal(w.created)) && al.wants[k] != nil {
			al.remove(al.wants[k])
		}
	}
	for _, a := range fixedAddrs(old) {
		al.family(a).unfix(a)
	}
	for _, a := range fixedAddrs(new) {
		al.family(a).fix(a)
	}
	for k, w := range newWants {
		if al.wants[k] == nil {
			al.wants[k] = w
			al.move(w)
			al.v4.place(w)
			al.v6.place(w)
		}
	}
	return al.changed()
}

func (al *allocator) family(a netip.Addr) *family {
	if a.Is4() {
		return &al.v4
	}
	return &al.v6
}

func (al *allocator) remove(w *want) {
	al.move(w)
	al.v4.remove(w)
	al.v6.remove(w)
	delete(al.wants, w.key)
}

// changed returns the keys whose addresses differ from before the first
// move since the last call.
func (al *allocator) changed() []allocKey {
	var out []allocKey
	for w, before := range al.moved {
		if al.wants[w.key] != w || al.pair(w) != before {
			out = append(out, w.key)
		}
	}
	clear(al.moved)
	return out
}

// wantsOf returns the hosts of se that need an address, by key.
func wantsOf(se *serviceEntry) map[allocKey]*want {
	if se == nil || se.specAddrs || se.noAlloc || se.resolution == apinetworking.ServiceEntry_NONE {
		return nil
	}
	out := map[allocKey]*want{}
	for _, h := range se.hosts {
		wild := strings.HasPrefix(h, "*")
		if (wild && se.resolution != apinetworking.ServiceEntry_DYNAMIC_DNS) || len(statusAddrs(se, h)) > 0 {
			continue
		}
		sum := sha256.Sum256([]byte(se.ns + "/" + se.name + "/" + h))
		w := &want{key: allocKey{se.key(), h}, ns: se.ns, name: se.name, created: se.created}
		w.at[0].start = binary.BigEndian.Uint64(sum[0:8])
		w.at[1].start = binary.BigEndian.Uint64(sum[8:16])
		out[w.key] = w
	}
	return out
}

// fixedAddrs are the addresses se gives itself, which no allocation takes.
func fixedAddrs(se *serviceEntry) []netip.Addr {
	if se == nil {
		return nil
	}
	out := append([]netip.Addr(nil), se.addrs...)
	for _, s := range se.status {
		out = append(out, s.addr)
	}
	return out
}

// place moves w on from its current position to the first one free for it,
// taking it from a younger want, which moves on in turn.
func (f *family) place(w *want) {
	for w != nil {
		w = f.advance(w)
	}
}

// advance places w and returns the want it displaced, if any.
func (f *family) advance(w *want) *want {
	p := &w.at[f.i]
	for ; p.steps < f.slots; p.steps++ {
		a := f.pos(p, p.steps)
		if f.fixed[a] == 0 {
			h := f.holder[a]
			if h == nil || w.older(h) {
				f.moved(w)
				f.holder[a] = w
				p.placed = true
				if h != nil {
					f.moved(h)
					h.at[f.i].placed = false
					f.pass(h, a)
					h.at[f.i].steps++
				}
				return h
			}
		}
		f.pass(w, a)
	}
	f.leave(w, 0, p.steps)
	p.steps, p.placed = 0, false
	f.unplaced[w] = struct{}{}
	return nil
}

// pos is the address at step s of p's sequence: start, start+1, ... modulo
// the family's size, so that the sequence meets every address once.
func (f *family) pos(p *probe, s uint64) netip.Addr {
	r := p.start % f.slots
	if s >= f.slots-r {
		return f.addr(s - (f.slots - r))
	}
	return f.addr(r + s)
}

// stepOf is the step of p's sequence at which a comes, if it is one of the
// family's addresses.
func (f *family) stepOf(p *probe, a netip.Addr) (uint64, bool) {
	n, ok := f.index(a)
	if !ok || n >= f.slots {
		return 0, false
	}
	r := p.start % f.slots
	if n < r {
		return f.slots - r + n, true
	}
	return n - r, true
}

func (f *family) pass(w *want, a netip.Addr) {
	if f.passing[a] == nil {
		f.passing[a] = map[*want]struct{}{}
	}
	f.passing[a][w] = struct{}{}
}

// leave takes w out of the passing lists of steps [from, to) of its
// sequence.
func (f *family) leave(w *want, from, to uint64) {
	p := &w.at[f.i]
	for s := from; s < to; s++ {
		a := f.pos(p, s)
		delete(f.passing[a], w)
		if len(f.passing[a]) == 0 {
			delete(f.passing, a)
		}
	}
}

func (f *family) remove(w *want) {
	p := &w.at[f.i]
	if !p.placed {
		delete(f.unplaced, w)
		return
	}
	f.leave(w, 0, p.steps)
	a := f.pos(p, p.steps)
	delete(f.holder, a)
	f.free(a)
}

// free gives a, which nothing holds or fixes any more, to the oldest want
// that probed past it; the address that want leaves is freed in turn.
func (f *family) free(a netip.Addr) {
	for {
		var z *want
		for w := range f.passing[a] {
			if z == nil || w.older(z) {
				z = w
			}
		}
		for w := range f.unplaced {
			if z == nil || w.older(z) {
				z = w
			}
		}
		if z == nil {
			return
		}
		p := &z.at[f.i]
		k, in := f.stepOf(p, a)
		if !in {
			return // not an address of the family: no one wants it
		}
		f.moved(z)
		if !p.placed {
			// Every address before a is taken: z passes them all.
			delete(f.unplaced, z)
			for s := range k {
				f.pass(z, f.pos(p, s))
			}
			p.steps, p.placed = k, true
			f.holder[a] = z
			return
		}
		// z stops at a: the steps after it, up to where z was, are no
		// longer on its way, and where it was is free.
		f.leave(z, k, p.steps)
		old := f.pos(p, p.steps)
		delete(f.holder, old)
		p.steps = k
		f.holder[a] = z
		a = old
	}
}

// fix adds a fixed address; an allocation there moves on.
func (f *family) fix(a netip.Addr) {
	f.fixed[a]++
	if f.fixed[a] > 1 {
		return
	}
	if h := f.holder[a]; h != nil {
		delete(f.holder, a)
		f.moved(h)
		h.at[f.i].placed = false
		f.pass(h, a)
		h.at[f.i].steps++
		f.place(h)
	}
}

// unfix removes a fixed address; the oldest want that probed past it takes it.
func (f *family) unfix(a netip.Addr) {
	if f.fixed[a]--; f.fixed[a] > 0 {
		return
	}
	delete(f.fixed, a)
	f.free(a)
}

// addrV4 is the address at position n of 240.240.0.0/16 (the first and
// last excluded).
func addrV4(n uint64) netip.Addr {
	b := allocV4
	n = n%v4Slots + 1
	b[2], b[3] = byte(n>>8), byte(n)
	return netip.AddrFrom4(b)
}

// addrV6 is the address at position n of the low 64 bits of 2001:2::/48
// (zero excluded).
func addrV6(n uint64) netip.Addr {
	b := allocV6
	binary.BigEndian.PutUint64(b[8:], n%(1<<64-1)+1)
	return netip.AddrFrom16(b)
}

func indexV4(a netip.Addr) (uint64, bool) {
	b := a.As16()
	if !a.Is4() || b[12] != allocV4[0] || b[13] != allocV4[1] {
		return 0, false
	}
	n := uint64(b[14])<<8 | uint64(b[15])
	return n - 1, n >= 1 && n <= v4Slots
}

func indexV6(a netip.Addr) (uint64, bool) {
	b := a.As16()
	if !a.Is6() || [8]byte(b[:8]) != [8]byte(allocV6[:8]) {
		return 0, false
	}
	n := binary.BigEndian.Uint64(b[8:])
	return n - 1, n >= 1
}
