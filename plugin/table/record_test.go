package table

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/miekg/dns"
)

// TestRecordSize: the table holds a Record per name, and 48 bytes is a Go size
// class; one byte more costs 16 per name.
func TestRecordSize(t *testing.T) {
	if size := unsafe.Sizeof(Record{}); size > 48 {
		t.Fatalf("Record is %d bytes, want at most 48", size)
	}
}

// TestRecordLimits: what is past 16-bit lengths is kept whole: an
// endpoint name longer than 255 characters and a headless service with more
// address records than 64 KiB of wire form.
func TestRecordLimits(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("s")
	host := strings.Repeat(strings.Repeat("a", 60)+".", 3) + "svc.cluster.local"
	if len(host) != 200 {
		t.Fatalf("host is %d characters", len(host))
	}
	label := strings.Repeat("c", 63)
	var addrs []netip.Addr
	var eps []Endpoint
	for i := range 5000 {
		a := netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(i >> 8), 15: byte(i)})
		addrs = append(addrs, a)
		eps = append(eps, Endpoint{Addr: a})
	}
	addrs = append(addrs, ip("10.0.0.1"))
	eps = append(eps, Endpoint{Hostname: label, Addr: ip("10.0.0.1")})
	e := Entry{Host: host, Registry: Kubernetes, Addrs: addrs, Endpoints: eps}
	// The 63-character hostname makes a name of 264 characters: that
	// endpoint is refused, the rest of the host is served.
	res := tb.Apply(src, []Entry{e}, nil)
	if res.Added != 1 || len(res.Rejected) != 1 || res.Rejected[0].Reason != "invalid_endpoint" {
		t.Fatalf("%+v", res)
	}
	r := tb.Lookup(host + ".").Record
	if a, size := r.WireAddrs(dns.TypeA); len(a) != WireA || size != WireA {
		t.Errorf("A wire %d bytes", len(a))
	}
	if aaaa, _ := r.WireAddrs(dns.TypeAAAA); len(aaaa) != 5000*WireAAAA {
		t.Errorf("AAAA wire %d bytes", len(aaaa))
	}
	if got := r.Entry(); !slices.Equal(got.Addrs, tb.Entries(src)[0].Addrs) || len(got.Addrs) != 5001 {
		t.Errorf("%d addresses back", len(got.Addrs))
	}
	if m := tb.Lookup(label + "." + host + "."); m.Kind != Miss {
		t.Errorf("endpoint name over 253 characters: %+v", m)
	}
	dashed := "fd00--1387." + host + "."
	if ep := tb.Lookup(dashed).Record; ep == nil || ep.Owner() != dashed {
		t.Fatalf("endpoint %q: %v", dashed, ep)
	}
}

// TestRecordEmpty: a host without addresses or ports (an ExternalName) has
// an empty wire form and no ports.
func TestRecordEmpty(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("s")
	tb.Apply(src, []Entry{{Host: "none.ns.svc.cluster.local", Registry: Kubernetes, Target: "example.org", Ports: []Port{}}}, nil)
	r := tb.Lookup("none.ns.").Record
	if r == nil || r.Owner() != "none.ns.svc.cluster.local." || r.Host() != "none.ns.svc.cluster.local" {
		t.Fatalf("record %v", r)
	}
	if a, _ := r.WireAddrs(dns.TypeA); a != "" || r.ttl() != 0 || len(r.A())+len(r.AAAA()) != 0 || r.Ports() != nil {
		t.Errorf("A %q, ttl %d, %d RRs, ports %v", a, r.ttl(), len(r.A())+len(r.AAAA()), r.Ports())
	}
}

// TestRecordPorts: the record keeps the entry's port list, and a caller that
// appends to Ports does not write into it.
func TestRecordPorts(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("s")
	shared := make([]Port, 2, 4)
	shared[0], shared[1] = Port{Name: "http", Number: 80}, Port{Name: "dns", Number: 53, Protocol: UDP}
	tb.Apply(src, []Entry{
		{Host: "a.ns.svc.cluster.local", Registry: Kubernetes, Addrs: []netip.Addr{ip("10.0.0.1")}, Ports: shared},
		{Host: "b.ns.svc.cluster.local", Registry: Kubernetes, Addrs: []netip.Addr{ip("10.0.0.2")}, Ports: shared[:1]},
	}, nil)
	a, b := tb.Lookup("a.ns.").Record, tb.Lookup("b.ns.").Record
	if !slices.Equal(a.Ports(), shared) || &a.Ports()[0] != &shared[0] || &b.Ports()[0] != &shared[0] || len(b.Ports()) != 1 {
		t.Fatalf("ports %v, %v", a.Ports(), b.Ports())
	}
	_ = append(b.Ports(), Port{Name: "x", Number: 1})
	if shared[1].Name != "dns" {
		t.Fatalf("append to Ports wrote into the entry's list: %v", shared)
	}
	if m := tb.Lookup("_dns._udp.a.ns."); m.Kind != Hit {
		t.Errorf("SRV _dns._udp: %v", m.Kind)
	}
}

// TestAllocRecord: every size gets room for its bytes, right after the
// Record up to 208 bytes, where 48 + the room is a size class.
func TestAllocRecord(t *testing.T) {
	for size := 1; size <= 300; size++ {
		r, buf := allocRecord(size)
		if len(buf) != 0 || cap(buf) < size {
			t.Fatalf("size %d: buffer len %d cap %d", size, len(buf), cap(buf))
		}
		after := uintptr(unsafe.Pointer(r)) + unsafe.Sizeof(Record{})
		if inline := uintptr(unsafe.Pointer(unsafe.SliceData(buf))) == after; inline != (size <= 208) {
			t.Errorf("size %d: bytes after the Record %v", size, inline)
		}
		if size <= 208 && cap(buf) >= size+16 {
			t.Errorf("size %d: room for %d bytes, a larger size class than needed", size, cap(buf))
		}
	}
}
