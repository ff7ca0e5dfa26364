package meshdns

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzServer sends arbitrary packets, over UDP or TCP (the low bit of the
// message ID chooses), to a whole CoreDNS server started in-process from a
// Corefile with meshdns in front of forward, and checks every reply: it
// unpacks and packs again with miekg/dns, and holds no name longer than 255
// octets. The debug plugin keeps the server from recovering a panic, so a
// panic anywhere in the chain fails the target.
// CI: go test -run '^$' -fuzz '^FuzzServer$' -fuzztime 30s ./plugin/meshdns/
func FuzzServer(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA, false},
		{"reviews.bookinfo.", dns.TypeAAAA, true},
		{"reviews.bookinfo.bookinfo.svc.cluster.local.", dns.TypeA, true},
		{"_http._tcp.reviews.bookinfo.svc.cluster.local.", dns.TypeSRV, false},
		{"_tcp.reviews.bookinfo.svc.cluster.local.", dns.TypeSRV, false},
		{"db.data.svc.cluster.local.", dns.TypeSRV, true},
		{"db-0.db.data.svc.cluster.local.", dns.TypeANY, false},
		{"10.0.0.10.in-addr.arpa.", dns.TypePTR, false},
		{"ext.bookinfo.svc.cluster.local.", dns.TypeTXT, true},
		{"alias.bookinfo.svc.cluster.local.", dns.TypeAAAA, false},
		{"a.b.wild.example.com.", dns.TypeA, false},
		{"a\\.b.wild.example.com.", dns.TypeA, false},
		{"cluster.local.", dns.TypeSOA, true},
		{"cluster.local.", dns.TypeNS, false},
		{"ns.dns.cluster.local.", dns.TypeA, false},
		{"dns-version.cluster.local.", dns.TypeTXT, false},
		{"cluster.local.", dns.TypeAXFR, false},
		{"www.example.org.", dns.TypeA, true},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns {
			m.SetEdns0(1232, true)
		}
		for id := range uint16(2) { // over UDP, then over TCP
			m.Id = id
			b, err := m.Pack()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	upstream := startServer(f, upstreamCorefile)
	srv := startMesh(f, suiteBlock("namespace"), upstream, "debug")
	f.Fuzz(func(t *testing.T, packet []byte) {
		reply := roundTrip(t, srv, packet)
		if reply == nil {
			return // not every packet is answered: one too short for a header, a response
		}
		m := new(dns.Msg)
		if err := m.Unpack(reply); err != nil {
			t.Fatalf("reply %x to %x does not unpack: %v", reply, packet, err)
		}
		if _, err := m.Pack(); err != nil {
			t.Fatalf("reply to %x does not pack again: %v\n%s", packet, err, m)
		}
		for _, rr := range append(append(append([]dns.RR{}, m.Answer...), m.Ns...), m.Extra...) {
			if n := wireNameLen(rr.Header().Name); n > 255 {
				t.Fatalf("reply to %x has a name of %d octets: %s", packet, n, rr)
			}
		}
	})
}

// roundTrip sends packet to s and returns the reply, or nil if none comes
// soon: a fresh socket each time, so a late reply never answers the next.
func roundTrip(t *testing.T, s server, packet []byte) []byte {
	network := "udp"
	if len(packet) >= 2 && packet[1]&1 == 1 {
		network = "tcp"
	}
	conn, err := net.Dial(network, s.addr(network))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if network == "udp" {
		if _, err := conn.Write(packet); err != nil {
			return nil
		}
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	if len(packet) > 65535 {
		return nil
	}
	framed := binary.BigEndian.AppendUint16(nil, uint16(len(packet)))
	if _, err := conn.Write(append(framed, packet...)); err != nil {
		return nil
	}
	var size [2]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil
	}
	buf := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil
	}
	return buf
}

// wireNameLen is the length of a presentation-form name in wire form.
func wireNameLen(name string) int {
	n, err := dns.PackDomainName(dns.Fqdn(name), make([]byte, 1024), 0, nil, false)
	if err != nil {
		return 1024
	}
	return n
}
