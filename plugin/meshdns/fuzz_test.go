package meshdns

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary packets to the handler: whatever unpacks must
// be answered without a panic, with at most the first question echoed.
// Run: go test -fuzz FuzzServeDNS ./plugin/meshdns/
func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"reviews.bookinfo.svc.cluster.local.", dns.TypeA},
		{"reviews.bookinfo.default.svc.cluster.local.", dns.TypeAAAA},
		{"_http._tcp.reviews.bookinfo.", dns.TypeSRV},
		{"10.0.0.10.in-addr.arpa.", dns.TypePTR},
		{"a.b.wild.example.com.", dns.TypeA},
		{"ext.bookinfo.svc.cluster.local.", dns.TypeA},
		{"\\046.svc.cluster.local.", dns.TypeA},
		{"Details.BookInfo.svc.cluster.local.", dns.TypeA},
		{"pool.bookinfo.svc.cluster.local.", dns.TypeA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b)
	}
	m := newMesh(f, "meshdns {\nfile testdata/mesh.json\nnamespace bookinfo\nfallthrough\n}", nextPlugin)
	f.Fuzz(func(t *testing.T, packet []byte) {
		r := new(dns.Msg)
		if r.Unpack(packet) != nil || len(r.Question) == 0 {
			return
		}
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		m.ServeDNS(context.Background(), rec, r)
		if rec.Msg != nil && len(rec.Msg.Question) != 1 {
			t.Fatalf("reply has %d questions", len(rec.Msg.Question))
		}
		// Through the server's writer: when meshdns writes the reply as
		// raw bytes, they must decode to the reply it builds otherwise.
		fast, slow := new(dns.Msg), new(dns.Msg)
		fast.Unpack(packet)
		slow.Unpack(packet)
		fc, sc := &capture{}, &capture{}
		m.ServeDNS(context.Background(), request.NewScrubWriter(fast, fc), fast)
		m.ServeDNS(context.Background(), msgOnly{request.NewScrubWriter(slow, sc)}, slow)
		if !fc.raw {
			return
		}
		got, want := new(dns.Msg), new(dns.Msg)
		if err := got.Unpack(fc.wire); err != nil {
			t.Fatalf("raw reply %x: %v", fc.wire, err)
		}
		if err := want.Unpack(sc.wire); err != nil {
			t.Fatalf("dns.Msg reply: %v", err)
		}
		if comparable(got) != comparable(want) {
			t.Fatalf("raw path\n%s\ndns.Msg path\n%s", comparable(got), comparable(want))
		}
	})
}
