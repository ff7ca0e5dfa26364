package meshdns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	_ "github.com/coredns/coredns/plugin/hosts" // the peer
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// Run: go test -run NONE -bench ServeDNS -benchmem ./plugin/meshdns/
//
// BenchmarkServeDNS answers the same queries from the same 100k services with
// meshdns and with CoreDNS's hosts plugin, in one run, through ServeDNS with
// the writer chain of a real server (ScrubWriter over a writer that packs the
// reply, as miekg/dns does) but no socket: what the plugins themselves cost.

const benchServices = 100_000

// nxNext stands for the rest of the chain (forward) on a miss.
var nxNext = plugin.HandlerFunc(func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
	return dns.RcodeNameError, nil
})

func benchMeshDNS(b *testing.B) plugin.Handler {
	m := &MeshDNS{Zones: []string{"."}, Next: nxNext, domain: "cluster.local.", ttl: 30}
	m.Fall.SetZonesFromArgs(nil)
	m.table = table.New(table.Config{Domain: "cluster.local", TTL: 30, Search: defaultSearch("cluster.local", "")})
	m.addSource(fakeSource("bench"))
	m.setSOAs()
	s := m.sources[0]
	var entries []table.Entry
	for i := range benchServices {
		entries = append(entries, table.Entry{Host: benchHost(i), Registry: table.Kubernetes, Addrs: []netip.Addr{benchAddr(i)},
			Ports: []table.Port{{Name: "http", Number: 80, Protocol: table.TCP}}})
	}
	entries = append(entries, table.Entry{Host: "*.wild.example.com", Addrs: []netip.Addr{netip.MustParseAddr("240.240.0.1")}})
	s.Replace(entries, nil)
	s.Synced()
	return m
}

func benchHosts(b *testing.B) plugin.Handler {
	var sb strings.Builder
	sb.WriteString("hosts {\n")
	for i := range benchServices {
		fmt.Fprintf(&sb, "%s %s\n", benchAddr(i), benchHost(i))
	}
	sb.WriteString("fallthrough\n}\n")
	c := caddy.NewTestController("dns", sb.String())
	c.ServerBlockKeys = []string{"."}
	setup, err := caddy.DirectiveAction("dns", "hosts")
	if err != nil {
		b.Fatal(err)
	}
	if err := setup(c); err != nil {
		b.Fatal(err)
	}
	return dnsserver.GetConfig(c).Plugin[0](nxNext)
}

func benchHost(i int) string { return fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i/100) }

func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(96 + i>>16), byte(i >> 8), byte(i)})
}

func BenchmarkServeDNS(b *testing.B) {
	peers := map[string]func(*testing.B) plugin.Handler{"meshdns": benchMeshDNS, "hosts": benchHosts}
	queries := []struct {
		name  string
		qname string
		qtype uint16
		hosts bool // the hosts plugin answers this kind too
	}{
		{"A_hit", "svc-51234.ns-512.svc.cluster.local.", dns.TypeA, true},
		{"AAAA_nodata", "svc-51234.ns-512.svc.cluster.local.", dns.TypeAAAA, true},
		{"A_external_miss", "www.example.org.", dns.TypeA, true},
		{"PTR_hit", "34.200.96.10.in-addr.arpa.", dns.TypePTR, true},
		{"A_short_name", "svc-51234.ns-512.", dns.TypeA, false},
		{"A_shortcut", "svc-51234.ns-512.default.svc.cluster.local.", dns.TypeA, false},
		{"A_wildcard", "a.wild.example.com.", dns.TypeA, false},
		{"SRV_hit", "_http._tcp.svc-51234.ns-512.svc.cluster.local.", dns.TypeSRV, false},
		{"A_ndots_miss", "www.example.org.default.svc.cluster.local.", dns.TypeA, false},
	}
	for _, peer := range []string{"hosts", "meshdns"} {
		h := peers[peer](b)
		for _, q := range queries {
			if peer == "hosts" && !q.hosts {
				continue
			}
			b.Run(peer+"/"+q.name, func(b *testing.B) {
				r := new(dns.Msg)
				r.SetQuestion(q.qname, q.qtype)
				w := request.NewScrubWriter(r, &packWriter{})
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					h.ServeDNS(ctx, w, r)
				}
			})
		}
	}
}

// packWriter packs a reply as miekg/dns's writer does before sending it.
type packWriter struct{ test.ResponseWriter }

func (p *packWriter) WriteMsg(m *dns.Msg) error {
	_, err := m.Pack()
	return err
}

// fakeSource is a source that is fed by hand.
type fakeSource string

func (f fakeSource) Name() string                             { return string(f) }
func (f fakeSource) Start(context.Context, source.Sink) error { return nil }
