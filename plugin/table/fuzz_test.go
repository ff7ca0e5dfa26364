package table

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzLookup: any name is looked up without a panic, and a Hit or Shortcut
// always comes with its record.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"reviews.bookinfo.", "a.b.wild.example.com.ns.svc.cluster.local.", "_http._tcp.x.", "..", "_.", "*.", "a"} {
		f.Add(s)
	}
	tb, _ := testTable(f, "bookinfo")
	f.Fuzz(func(t *testing.T, name string) {
		m := tb.Lookup(strings.ToLower(name))
		if (m.Kind == Hit || m.Kind == Shortcut || m.Kind == Wildcard) && m.Record == nil {
			t.Fatalf("%q: %v without a record", name, m.Kind)
		}
		if m.Kind == Shortcut && (m.Cut <= 0 || m.Cut > len(name)) {
			t.Fatalf("%q: cut %d", name, m.Cut)
		}
	})
}

// FuzzParseReverse: whatever parses is the address dns.ReverseAddr names.
func FuzzParseReverse(f *testing.F) {
	for _, s := range []string{"1.0.0.127.in-addr.arpa.", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "x.in-addr.arpa."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		a, ok := ParseReverse(name)
		if !ok {
			return
		}
		want, err := dns.ReverseAddr(a.String())
		if err != nil || want != dns.Fqdn(name) {
			t.Fatalf("ParseReverse(%q) = %v, whose reverse name is %q", name, a, want)
		}
	})
}
