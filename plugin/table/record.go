package table

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"unsafe"

	"github.com/miekg/dns"
)

// Record is the immutable, precomputed answer data of one served name. The
// table replaces a Record on update and never changes one that readers can see.
//
// What a query reads comes first, to share a cache line: owner, for the
// lookup's name check, and wire, for the answer; both point into one
// allocation.
type Record struct {
	owner string // canonical name with trailing dot
	// wire is the A records, then the AAAA records, in wire form without
	// their owner name: type, class, TTL, RDLENGTH and RDATA.
	wire      string
	extra     *recordExtra // nil for the common ClusterIP service
	wireSplit int32        // wire[:wireSplit] are the A records
	split     int32        // rrs[:split] are A, rrs[split:] are AAAA
	// shortName is the length of "<name>.<ns>" in owner for a Kubernetes host
	// that has short names, else 0.
	shortName uint16
	registry  Registry
	source    SourceID
	ports     []Port
	rrs       []dns.RR // A records, then AAAA records; owner is owner

	// Storage for the common single-address case, so that it costs one
	// allocation fewer.
	one   dns.A
	oneRR [1]dns.RR
}

// The sizes of an A and an AAAA record in wire form without the owner name.
const (
	rrFixed  = 10 // type, class, TTL, RDLENGTH
	WireA    = rrFixed + net.IPv4len
	WireAAAA = rrFixed + net.IPv6len
)

type recordExtra struct {
	target    string     // CNAME target with trailing dot (ExternalName)
	endpoints []Endpoint // as given, for equality
	names     []*Record  // endpoint names, sorted by owner
	byLabel   map[string]*Record
	wildcard  bool // owner is "*.suffix."
}

// Owner is the canonical name with its trailing dot.
func (r *Record) Owner() string { return r.owner }

// Host is the canonical name without the trailing dot.
func (r *Record) Host() string { return r.owner[:len(r.owner)-1] }

// Source is the source that contributed this record.
func (r *Record) Source() SourceID { return r.source }

// A returns the precomputed A records, owned by Owner. Callers must not modify
// the slice or the records.
func (r *Record) A() []dns.RR { return r.rrs[:r.split] }

// AAAA returns the precomputed AAAA records, owned by Owner.
func (r *Record) AAAA() []dns.RR { return r.rrs[r.split:] }

// WireAddrs returns the records of type qtype (A or AAAA) in wire form
// without their owner name, each size bytes long.
func (r *Record) WireAddrs(qtype uint16) (rrs string, size int) {
	if qtype == dns.TypeA {
		return r.wire[:r.wireSplit], WireA
	}
	return r.wire[r.wireSplit:], WireAAAA
}

// Addrs returns the records of type qtype (A or AAAA).
func (r *Record) Addrs(qtype uint16) []dns.RR {
	if qtype == dns.TypeA {
		return r.A()
	}
	return r.AAAA()
}

// Target is the CNAME target (with trailing dot) of an ExternalName host, or "".
func (r *Record) Target() string {
	if r.extra == nil {
		return ""
	}
	return r.extra.target
}

// Ports returns the service ports.
func (r *Record) Ports() []Port { return r.ports }

// Endpoints returns the per-endpoint name records of a headless service, sorted.
func (r *Record) Endpoints() []*Record {
	if r.extra == nil {
		return nil
	}
	return r.extra.names
}

// Wildcard reports whether this is a "*.suffix" record.
func (r *Record) Wildcard() bool { return r.extra != nil && r.extra.wildcard }

// Entry rebuilds the entry the record was made from, for snapshots and dumps.
func (r *Record) Entry() Entry {
	e := Entry{Host: r.Host(), Registry: r.registry, Ports: r.ports}
	for a := range r.addrs {
		e.Addrs = append(e.Addrs, a)
	}
	if r.extra != nil {
		e.Endpoints = r.extra.endpoints
		e.Target = strings.TrimSuffix(r.extra.target, ".")
	}
	return e
}

// nameCount is the number of DNS names the record serves: the host, its short
// names, and its endpoint names.
func (r *Record) nameCount(namespace string) int {
	n := 1 + len(r.Endpoints())
	if r.shortName > 0 {
		n += 2
		if r.namespace() == namespace {
			n++ // the bare name
		}
	}
	return n
}

// namespace is the <ns> of a host with short names "<name>.<ns>.svc...".
func (r *Record) namespace() string {
	short := r.owner[:r.shortName]
	return short[strings.IndexByte(short, '.')+1:]
}

func (t *Table) build(src SourceID, e Entry) *Record {
	r := &Record{source: src, registry: e.Registry, ports: e.Ports}
	if e.Registry == Kubernetes {
		r.shortName = uint16(t.shortNameLen(e.Host))
	}
	t.setAddrs(r, e.Host, ".", e.Addrs)
	wild := strings.HasPrefix(e.Host, "*.")
	if e.Target != "" || len(e.Endpoints) > 0 || wild {
		x := &recordExtra{endpoints: e.Endpoints, wildcard: wild}
		if e.Target != "" {
			x.target = e.Target + "."
		}
		x.names, x.byLabel = t.endpointRecords(src, r.owner, e.Endpoints)
		r.extra = x
	}
	return r
}

// endpointRecords groups endpoints by name ("<hostname>" or the dashed
// address) so a dual-stack pod gets one name with both addresses.
func (t *Table) endpointRecords(src SourceID, owner string, eps []Endpoint) ([]*Record, map[string]*Record) {
	if len(eps) == 0 {
		return nil, nil
	}
	addrs := map[string][]netip.Addr{}
	for _, ep := range eps {
		label := ep.Hostname
		if label == "" {
			label = dashed(ep.Addr)
		}
		addrs[label] = append(addrs[label], ep.Addr)
	}
	byLabel := make(map[string]*Record, len(addrs))
	names := make([]*Record, 0, len(addrs))
	for label, as := range addrs {
		slices.SortFunc(as, netip.Addr.Compare)
		r := &Record{source: src}
		t.setAddrs(r, label+".", owner, slices.Compact(as))
		byLabel[label] = r
		names = append(names, r)
	}
	slices.SortFunc(names, func(a, b *Record) int { return strings.Compare(a.owner, b.owner) })
	return names, byLabel
}

// dashed is the CoreDNS kubernetes plugin's name for an endpoint without a
// hostname: 10.0.0.1 -> "10-0-0-1", 2001:db8::1 -> "2001-db8--1".
func dashed(a netip.Addr) string {
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.String(), ":", "-")
}

// setAddrs sets the owner, name+suffix, and precomputes the address records,
// as RRs and in wire form; addrs are sorted, IPv4 first.
func (t *Table) setAddrs(r *Record, name, suffix string, addrs []netip.Addr) {
	ownerLen := len(name) + len(suffix)
	size := ownerLen
	for _, a := range addrs {
		if a.Is4() {
			size += WireA
			r.wireSplit += WireA
		} else {
			size += WireAAAA
		}
	}
	buf := append(append(make([]byte, 0, size), name...), suffix...)
	for _, a := range addrs {
		rrtype := dns.TypeAAAA
		if a.Is4() {
			rrtype = dns.TypeA
		}
		ip := a.AsSlice()
		buf = binary.BigEndian.AppendUint16(buf, rrtype)
		buf = binary.BigEndian.AppendUint16(buf, dns.ClassINET)
		buf = binary.BigEndian.AppendUint32(buf, t.cfg.TTL)
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(ip)))
		buf = append(buf, ip...)
	}
	// Nothing writes to buf from here on.
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	r.owner, r.wire = all[:ownerLen], all[ownerLen:]

	if len(addrs) == 1 && addrs[0].Is4() {
		// The address is the wire form's RDATA.
		r.one = dns.A{Hdr: t.hdr(r.owner, dns.TypeA), A: buf[ownerLen+rrFixed : len(buf) : len(buf)]}
		r.oneRR[0] = &r.one
		r.rrs, r.split = r.oneRR[:], 1
		return
	}
	r.rrs = make([]dns.RR, 0, len(addrs))
	for _, a := range addrs {
		if a.Is4() {
			r.rrs = append(r.rrs, &dns.A{Hdr: t.hdr(r.owner, dns.TypeA), A: a.AsSlice()})
			r.split++
		} else {
			r.rrs = append(r.rrs, &dns.AAAA{Hdr: t.hdr(r.owner, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
}

func (t *Table) hdr(owner string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: t.cfg.TTL}
}

// addrs returns the record's addresses in order.
func (r *Record) addrs(yield func(netip.Addr) bool) {
	for _, rr := range r.rrs {
		if !yield(rrAddr(rr)) {
			return
		}
	}
}

// rrAddr is the address of one of our own A or AAAA records.
func rrAddr(rr dns.RR) netip.Addr {
	var ip []byte
	switch rr := rr.(type) {
	case *dns.A:
		ip = rr.A.To4()
	case *dns.AAAA:
		ip = rr.AAAA
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// matches reports whether r was built from an entry equal to e (normalized),
// so an unchanged entry changes nothing.
func (t *Table) matches(r *Record, src SourceID, e Entry) bool {
	if r.source != src || r.registry != e.Registry || r.Host() != e.Host || !slices.Equal(r.ports, e.Ports) {
		return false
	}
	if r.Target() != targetFQDN(e.Target) {
		return false
	}
	var eps []Endpoint
	if r.extra != nil {
		eps = r.extra.endpoints
	}
	if !slices.Equal(eps, e.Endpoints) || len(r.rrs) != len(e.Addrs) {
		return false
	}
	i := 0
	for a := range r.addrs {
		if a != e.Addrs[i] {
			return false
		}
		i++
	}
	return true
}

func targetFQDN(t string) string {
	if t == "" {
		return ""
	}
	return t + "."
}
