package xds

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// settle bounds how long an API change may take to reach the answers:
// istiod's debounce (100 ms, up to 10 s under constant change) and push.
const settle = 30 * time.Second

// cacheKey is a combination of the DO and CD bits. CoreDNS's cache plugin
// keys its entries by name, type, class, DO and CD, so a query with a
// combination not used before for a name is answered by meshdns, not by an
// entry cached up to 30 s earlier (docs/vm/Corefile has `cache 30`).
type cacheKey struct{ do, cd bool }

var plainKey = cacheKey{}

// answer is harness.Answer without the DO and CD bits.
func answer(addr, name string, qtype uint16, network string) string {
	return answerKey(addr, name, qtype, network, plainKey)
}

func answerKey(addr, name string, qtype uint16, network string, k cacheKey) string {
	return harness.Answer(addr, name, qtype, network, k.do, k.cd)
}

// expect polls until name answers want for qtype over both UDP and TCP.
func expect(t testing.TB, addr, name string, qtype uint16, want string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		udp, tcp := answer(addr, name, qtype, "udp"), answer(addr, name, qtype, "tcp")
		if udp == want && tcp == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s on %s: got %q over UDP and %q over TCP after %s, want %q",
				name, dns.TypeToString[qtype], addr, udp, tcp, settle, want)
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

// expectNow asks once, over UDP and TCP, with cache key k: for a server
// with a cache, after waitSnapshot has shown that its table has changed.
func expectNow(t testing.TB, addr, name string, qtype uint16, k cacheKey, want string) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		if got := answerKey(addr, name, qtype, network, k); got != want {
			t.Errorf("%s %s on %s over %s (DO %v, CD %v) = %q, want %q",
				name, dns.TypeToString[qtype], addr, network, k.do, k.cd, got, want)
		}
	}
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

// waitMetricAtLeast polls until the metric sample reads n or more.
func waitMetricAtLeast(t testing.TB, c *harness.CoreDNS, metric string, n float64) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		got := c.Metric(metric)
		if v, err := strconv.ParseFloat(got, 64); err == nil && v >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q after %s, want at least %v", metric, got, settle, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// snapshot is the xds source's snapshot file: the file source's format.
type snapshot struct {
	Table map[string]struct {
		IPs      []string `json:"ips"`
		Registry string   `json:"registry"`
	} `json:"table"`
}

// ips returns the sorted addresses of host, space-separated, and whether the
// snapshot has host.
func (s snapshot) ips(host string) (string, bool) {
	info, ok := s.Table[host]
	if !ok {
		return "", false
	}
	ips := slices.Sorted(slices.Values(info.IPs))
	return strings.Join(ips, " "), true
}

func readSnapshot(path string) (snapshot, error) {
	var s snapshot
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// waitSnapshot polls the snapshot file until want holds for it. The xds
// source writes it after the push is applied to the table, so when it holds
// the server answers from the new table.
func waitSnapshot(t testing.TB, path string, what string, want func(snapshot) bool) snapshot {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		s, err := readSnapshot(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("snapshot %s: %v", path, err)
		}
		if err == nil && want(s) {
			return s
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("snapshot %s: not %s after %s:\n%s", path, what, settle, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// snapshotHas is a waitSnapshot condition: every host has exactly these
// addresses (sorted, space-separated); "-" means the host is absent.
func snapshotHas(hosts map[string]string) func(snapshot) bool {
	return func(s snapshot) bool {
		for h, want := range hosts {
			got, ok := s.ips(h)
			if want == "-" && ok || want != "-" && (!ok || got != want) {
				return false
			}
		}
		return true
	}
}
