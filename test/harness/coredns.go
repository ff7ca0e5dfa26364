package harness

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CoreDNS is a running bin/coredns, the build under test.
type CoreDNS struct {
	// Addr is the 127.0.0.1:PORT it serves DNS on, over UDP and TCP.
	Addr string
	// MetricsURL is where the prometheus plugin serves.
	MetricsURL string
	p          *Process
}

// StartCoreDNS runs bin/coredns on a free loopback port with a Corefile
// whose meshdns block has body, and waits until the ready plugin reports
// every source loaded. It is stopped when the test ends.
func StartCoreDNS(t TB, body string) *CoreDNS {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return StartCoreDNSAt(t, ports[0], body)
}

// StartCoreDNSAt is StartCoreDNS on a given DNS port of 127.0.0.1.
func StartCoreDNSAt(t TB, port int, body string) *CoreDNS {
	t.Helper()
	bin := requireBinary(t, binaryDir(t), "coredns")
	dir := t.TempDir()
	ports, err := freePorts(2)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	ports = append([]int{port}, ports...)
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	ready := "127.0.0.1:" + strconv.Itoa(ports[1])
	metrics := "127.0.0.1:" + strconv.Itoa(ports[2])
	corefile := fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\tready %s\n\tprometheus %s\n\tmeshdns {\n%s\n\t}\n}\n",
		ports[0], ready, metrics, body)
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	p, err := startProcess("coredns", bin, []string{"-conf", path}, filepath.Join(dir, "coredns.log"))
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	c := &CoreDNS{Addr: addr, MetricsURL: "http://" + metrics + "/metrics", p: p}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("harness: last lines of the coredns log:\n%s", p.LogTail(40))
		}
	})
	begin := time.Now()
	if err := waitReady(p, "http://"+ready+"/ready", ""); err != nil {
		t.Logf("harness: Corefile:\n%s\nlast lines of the coredns log:\n%s", corefile, p.LogTail(40))
		t.Fatalf("harness: %v", err)
	}
	t.Logf("harness: coredns ready in %s on %s", time.Since(begin).Round(time.Millisecond), addr)
	return c
}

// Log returns the last n lines of the CoreDNS log.
func (c *CoreDNS) Log(n int) string { return c.p.LogTail(n) }

// Metric returns the value of the first sample whose line starts with
// prefix (a metric name with labels, as exposed), or "" if there is none.
func (c *CoreDNS) Metric(prefix string) string {
	resp, err := http.Get(c.MetricsURL)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), prefix+" "); ok {
			return rest
		}
	}
	return ""
}
