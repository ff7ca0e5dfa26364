package kubernetes

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// settle bounds how long an API change may take to show in answers.
const settle = 30 * time.Second

// answer is harness.Answer without the DO and CD bits.
func answer(addr, name string, qtype uint16, network string) string {
	return harness.Answer(addr, name, qtype, network, false, false)
}

// expect polls until name answers want for qtype over both UDP and TCP.
func expect(t testing.TB, addr, name string, qtype uint16, want string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		begin := time.Now()
		udp, tcp := answer(addr, name, qtype, "udp"), answer(addr, name, qtype, "tcp")
		if udp == want && tcp == want {
			return
		}
		if d := time.Since(begin); d > time.Second {
			t.Logf("slow: %s %s took %s: udp %q tcp %q", name, dns.TypeToString[qtype], d, udp, tcp)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: got %q over UDP and %q over TCP after %s, want %q",
				name, dns.TypeToString[qtype], udp, tcp, settle, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expectA checks both families: want4 for A, want6 for AAAA.
func expectA(t testing.TB, addr, name, want4, want6 string) {
	t.Helper()
	expect(t, addr, name, dns.TypeA, want4)
	expect(t, addr, name, dns.TypeAAAA, want6)
}

// inPrefix reports whether every address of an answer is in prefix.
func inPrefix(ans, prefix string) bool {
	p := netip.MustParsePrefix(prefix)
	for f := range strings.FieldsSeq(ans) {
		a, err := netip.ParseAddr(f)
		if err != nil || !p.Contains(a) {
			return false
		}
	}
	return ans != ""
}

// waitMetric polls until the metric sample reads want.
func waitMetric(t testing.TB, c *harness.CoreDNS, metric, want string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		got := c.Metric(metric)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q after %s, want %q", metric, got, settle, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
