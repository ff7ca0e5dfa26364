package table

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/miekg/dns"
)

// Record is the immutable, precomputed answer data of one served name. The
// table replaces a Record on update and never changes one that readers can see
// (but for rrs, a cache filled once).
//
// A table holds one per name, so it is kept to 48 bytes, a size class
// (TestRecordSize): a *byte and lengths instead of string headers, a *Port
// and a count instead of a slice header.
//
// go test -run NONE -bench RecordLayout ./plugin/table/: 3.1 MiB less per
// 100k records than owner and wire strings (17 % of the table at 100k, 17.9
// MiB in BenchmarkLoad/100k), and 1.5 MiB less than a []Port (8.5 %).
type Record struct {
	// data is the owner, the canonical name with its trailing dot, then the
	// wire form of the A records and then the AAAA records, without their
	// owner name: type, class, TTL, RDLENGTH and RDATA. It is one allocation
	// (see newRecord); owner and wire return its parts.
	data      *byte
	wireLen   uint32 // see maxAddrs
	wireSplit uint32 // wire()[:wireSplit] are the A records
	ownerLen  uint16 // an endpoint name can be longer than 255
	source    SourceID
	nports    uint16 // see maxPorts
	// shortName is the length of "<name>.<ns>" in owner for a Kubernetes host
	// that has short names, else 0; a host has at most 253 characters.
	shortName uint8
	registry  Registry
	extra     *recordExtra // nil for the common ClusterIP service
	// ports are the first of nports ports, in the array of the entry's Ports
	// as given: a pointer rather than a slice header, and no copy, since the
	// kubernetes source already shares one array between equal lists.
	ports *Port
	// rrs is the wire form as dns.RRs, owned by owner, for the answers that
	// are built as a dns.Msg; made on first use, since most names are only
	// ever answered as wire bytes, and at 100k names they would be a third
	// of the table's memory.
	rrs atomic.Pointer[[]dns.RR]
}

// owner is the canonical name with its trailing dot.
func (r *Record) owner() string { return unsafe.String(r.data, r.ownerLen) }

// wire is the address records in wire form (see data).
func (r *Record) wire() string {
	// Slicing, rather than a pointer past owner, never makes a pointer past
	// the end of data when wire is empty.
	return unsafe.String(r.data, int(r.ownerLen)+int(r.wireLen))[r.ownerLen:]
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
	// clusters are the member clusters of a multicluster service's
	// endpoints: "<cluster>.<host>" is an empty non-terminal.
	clusters []string
	wildcard bool // owner is "*.suffix."
}

// Owner is the canonical name with its trailing dot.
func (r *Record) Owner() string { return r.owner() }

// Host is the canonical name without the trailing dot.
func (r *Record) Host() string { return unsafe.String(r.data, int(r.ownerLen)-1) }

// Source is the source that contributed this record.
func (r *Record) Source() SourceID { return r.source }

// A returns the A records, owned by Owner. Callers must not modify the slice
// or the records.
func (r *Record) A() []dns.RR { return r.records()[:r.wireSplit/WireA] }

// AAAA returns the AAAA records, owned by Owner.
func (r *Record) AAAA() []dns.RR { return r.records()[r.wireSplit/WireA:] }

// records returns rrs, made from the wire form the first time.
func (r *Record) records() []dns.RR {
	if p := r.rrs.Load(); p != nil {
		return *p
	}
	rrs := []dns.RR{}
	for a := range r.addrs {
		hdr := dns.RR_Header{Name: r.owner(), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: r.ttl()}
		if a.Is4() {
			rrs = append(rrs, &dns.A{Hdr: hdr, A: a.AsSlice()})
		} else {
			hdr.Rrtype = dns.TypeAAAA
			rrs = append(rrs, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	// Readers that race here make equal slices; all keep the first.
	r.rrs.CompareAndSwap(nil, &rrs)
	return *r.rrs.Load()
}

// ttl is the records' TTL, the same for all of them.
func (r *Record) ttl() uint32 {
	if r.wireLen < rrFixed {
		return 0
	}
	w := r.wire()[4:8]
	return uint32(w[0])<<24 | uint32(w[1])<<16 | uint32(w[2])<<8 | uint32(w[3])
}

// WireAddrs returns the records of type qtype (A or AAAA) in wire form
// without their owner name, each size bytes long.
func (r *Record) WireAddrs(qtype uint16) (rrs string, size int) {
	w := r.wire()
	if qtype == dns.TypeA {
		return w[:r.wireSplit], WireA
	}
	return w[r.wireSplit:], WireAAAA
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

// Ports returns the service ports. Callers must not modify them; appending
// copies, as the slice is full.
func (r *Record) Ports() []Port { return unsafe.Slice(r.ports, r.nports) }

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
	e := Entry{Host: r.Host(), Registry: r.registry, Ports: r.Ports()}
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
	short := r.owner()[:r.shortName]
	return short[strings.IndexByte(short, '.')+1:]
}

func (t *Table) build(src SourceID, e Entry) *Record {
	r := t.newRecord(e.Host, ".", e.Addrs)
	r.source, r.registry = src, e.Registry
	if len(e.Ports) > 0 {
		// Normalize bounds the count.
		r.ports, r.nports = unsafe.SliceData(e.Ports), uint16(len(e.Ports))
	}
	if e.Registry == Kubernetes {
		r.shortName = uint8(t.shortNameLen(e.Host))
	}
	wild := strings.HasPrefix(e.Host, "*.")
	if e.Target != "" || len(e.Endpoints) > 0 || wild {
		x := &recordExtra{endpoints: e.Endpoints, wildcard: wild}
		if e.Target != "" {
			x.target = e.Target + "."
		}
		x.names, x.byLabel = t.endpointRecords(src, r.owner(), e.Endpoints)
		for _, ep := range e.Endpoints {
			if ep.Cluster != "" && !slices.Contains(x.clusters, ep.Cluster) {
				x.clusters = append(x.clusters, ep.Cluster)
			}
		}
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
		label := endpointLabel(ep)
		addrs[label] = append(addrs[label], ep.Addr)
	}
	byLabel := make(map[string]*Record, len(addrs))
	names := make([]*Record, 0, len(addrs))
	for label, as := range addrs {
		slices.SortFunc(as, netip.Addr.Compare)
		r := t.newRecord(label+".", owner, slices.Compact(as))
		r.source = src
		byLabel[label] = r
		names = append(names, r)
	}
	slices.SortFunc(names, func(a, b *Record) int { return strings.Compare(a.owner(), b.owner()) })
	return names, byLabel
}

// endpointLabel is what an endpoint's name puts before its host: its
// hostname or dashed address, then its cluster for a multicluster service.
func endpointLabel(ep Endpoint) string {
	label := ep.Hostname
	if label == "" {
		label = dashed(ep.Addr)
	}
	if ep.Cluster != "" {
		label += "." + ep.Cluster
	}
	return label
}

// dashed is the CoreDNS kubernetes plugin's name for an endpoint without a
// hostname: 10.0.0.1 -> "10-0-0-1", 2001:db8::1 -> "2001-db8--1",
// fd00:: -> "fd00--0".
func dashed(a netip.Addr) string {
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	// "fd00::" would end in a hyphen; the kubernetes plugin adds a zero.
	d := strings.ReplaceAll(a.String(), ":", "-")
	if strings.HasSuffix(d, "-") {
		d += "0"
	}
	return d
}

// newRecord makes the Record of name+suffix and precomputes its address
// records in wire form; addrs are sorted, IPv4 first.
func (t *Table) newRecord(name, suffix string, addrs []netip.Addr) *Record {
	ownerLen := len(name) + len(suffix)
	split, size := 0, ownerLen
	for _, a := range addrs {
		if a.Is4() {
			size += WireA
			split += WireA
		} else {
			size += WireAAAA
		}
	}
	// Normalize keeps within these (maxAddrs); never serve a truncated answer.
	if ownerLen > math.MaxUint16 || uint64(size-ownerLen) > math.MaxUint32 {
		panic(fmt.Sprintf("table: record %s%s too large: %d addresses", name, suffix, len(addrs)))
	}
	r, buf := allocRecord(size)
	buf = append(append(buf, name...), suffix...)
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
	r.data = unsafe.SliceData(buf)
	r.ownerLen, r.wireLen, r.wireSplit = uint16(ownerLen), uint32(size-ownerLen), uint32(split)
	return r
}

// recordAllocs[i] makes a Record with room for 16*(i+1) bytes after it
// (withTail): 48 bytes plus any multiple of 16 up to 208 is a size class,
// so the heap is what a Record and its bytes apart take, and a query that
// reads the Record finds the name and the answer in the same or the next
// cache line.
//
// go test -run NONE -bench RecordTail ./plugin/table/: the same heap as a
// Record and its bytes apart, one allocation instead of two, and 97 to 155
// ns less per hit on a spread of 100k names (16 to 18 % of
// BenchmarkLookup/hit_spread in the same runs); 1.5 ns less per hit in the
// caches (4 % of BenchmarkLookup/hit).
var recordAllocs = [...]func() (*Record, []byte){
	newWithTail[Record, byte, [16]byte], newWithTail[Record, byte, [32]byte],
	newWithTail[Record, byte, [48]byte], newWithTail[Record, byte, [64]byte],
	newWithTail[Record, byte, [80]byte], newWithTail[Record, byte, [96]byte],
	newWithTail[Record, byte, [112]byte], newWithTail[Record, byte, [128]byte],
	newWithTail[Record, byte, [144]byte], newWithTail[Record, byte, [160]byte],
	newWithTail[Record, byte, [176]byte], newWithTail[Record, byte, [192]byte],
	newWithTail[Record, byte, [208]byte],
}

// allocRecord returns a new Record and an empty buffer for size bytes,
// after the Record when they fit (recordAllocs), else apart.
func allocRecord(size int) (*Record, []byte) {
	if i := (size+15)/16 - 1; i < len(recordAllocs) {
		r, buf := recordAllocs[max(i, 0)]()
		return r, buf[:0]
	}
	return new(Record), make([]byte, 0, size)
}

// addrs returns the record's addresses in order, from the wire form.
func (r *Record) addrs(yield func(netip.Addr) bool) {
	w := r.wire()
	for i := 0; i < len(w); {
		var a netip.Addr
		if i < int(r.wireSplit) {
			var ip [4]byte
			copy(ip[:], w[i+rrFixed:i+WireA])
			a, i = netip.AddrFrom4(ip), i+WireA
		} else {
			var ip [16]byte
			copy(ip[:], w[i+rrFixed:i+WireAAAA])
			a, i = netip.AddrFrom16(ip), i+WireAAAA
		}
		if !yield(a) {
			return
		}
	}
}

// hasAddr reports whether a is one of the record's addresses.
func (r *Record) hasAddr(a netip.Addr) bool {
	for b := range r.addrs {
		if b == a {
			return true
		}
	}
	return false
}

// addrCount is the number of addresses.
func (r *Record) addrCount() int {
	return int(r.wireSplit)/WireA + int(r.wireLen-r.wireSplit)/WireAAAA
}

// matches reports whether r was built from an entry equal to e (normalized),
// so an unchanged entry changes nothing.
func (t *Table) matches(r *Record, src SourceID, e Entry) bool {
	if r.source != src || r.registry != e.Registry || r.Host() != e.Host || !slices.Equal(r.Ports(), e.Ports) {
		return false
	}
	if r.Target() != targetFQDN(e.Target) {
		return false
	}
	var eps []Endpoint
	if r.extra != nil {
		eps = r.extra.endpoints
	}
	if !slices.Equal(eps, e.Endpoints) || r.addrCount() != len(e.Addrs) {
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
