package meshdns

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
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
	})
}
