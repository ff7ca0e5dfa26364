package xds

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// vmAddr is the loopback address docs/vm/Corefile binds to; kept as shipped.
const vmAddr = "127.0.0.2"

// vm is docs/vm/Corefile rendered for this test: the same file is run again
// (after Stop) to boot from the snapshot the previous run wrote.
type vm struct {
	corefile, snapshot string
	addr, ready        string
	metrics            string
	source             string // the xds source's name in metrics
}

// vmIdentity is what the template's VM_* placeholders become.
type vmIdentity struct{ ip, name, namespace string }

// renderVM writes docs/vm/Corefile with every site-specific value replaced
// by this test's, and nothing else changed. Each replacement must match
// exactly once, so a change to the template fails here rather than
// silently testing something else.
func renderVM(t *testing.T, istiodTLS string, id vmIdentity, rootCert []byte, token, upstream string) *vm {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "vm", "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ports := harness.FreePorts(t, 2)
	v := &vm{
		snapshot: filepath.Join(dir, "snapshot.json"),
		addr:     net.JoinHostPort(vmAddr, strconv.Itoa(harness.FreeDNSPort(t, vmAddr))),
		ready:    "127.0.0.1:" + strconv.Itoa(ports[0]),
		metrics:  "127.0.0.1:" + strconv.Itoa(ports[1]),
		source:   "xds:" + istiodTLS,
	}
	_, dnsPort, _ := net.SplitHostPort(v.addr)
	replacements := []struct{ old, new string }{
		{".:53 {", ".:" + dnsPort + " {"},
		{"ready 127.0.0.1:8181", "ready " + v.ready},
		{"prometheus 127.0.0.1:9153", "prometheus " + v.metrics},
		{"ISTIOD_IP:15012", istiodTLS},
		{"node_ip VM_IP", "node_ip " + id.ip},
		{"workload VM_NAME", "workload " + id.name},
		{"namespace VM_NAMESPACE", "namespace " + id.namespace},
		{"/etc/certs/root-cert.pem", write("root-cert.pem", rootCert)},
		{"/var/run/secrets/tokens/istio-token", write("istio-token", []byte(token))},
		{"/var/lib/meshdns/snapshot.json", v.snapshot},
		{"forward . /etc/meshdns/upstream.conf", "forward . " + upstream},
	}
	out := string(tmpl)
	for _, r := range replacements {
		if n := strings.Count(out, r.old); n != 1 {
			t.Fatalf("docs/vm/Corefile: %q occurs %d times, want once; the template changed:\n%s", r.old, n, tmpl)
		}
		out = strings.Replace(out, r.old, r.new, 1)
	}
	// Nothing of the machine it was written for is left.
	for _, line := range strings.Split(out, "\n") {
		code, _, _ := strings.Cut(line, "#")
		if m := regexp.MustCompile(`(VM_[A-Z]+|ISTIOD_IP|/etc/|/var/|\b53\b|8181|9153)`).FindString(code); m != "" {
			t.Fatalf("rendered docs/vm/Corefile still has %q in %q:\n%s", m, line, out)
		}
	}
	if !strings.Contains(out, "bind "+vmAddr+"\n") {
		t.Fatalf("docs/vm/Corefile does not bind %s:\n%s", vmAddr, out)
	}
	v.corefile = write("Corefile", []byte(out))
	t.Logf("docs/vm/Corefile rendered as %s:\n%s", v.corefile, out)
	return v
}

// start runs the rendered Corefile and waits for the ready plugin.
func (v *vm) start(t *testing.T) *harness.CoreDNS {
	t.Helper()
	return harness.StartCoreDNSWith(t, harness.CoreDNSConfig{
		Corefile: v.corefile, Addr: v.addr, ReadyAddr: v.ready, MetricsAddr: v.metrics, WaitReady: true,
	})
}

// upstream is the VM's "real resolver": it answers upstreamName and
// NXDOMAIN for everything else, and records the names it was asked.
type upstream struct {
	addr string
	mu   sync.Mutex
	seen map[string]int
}

const (
	upstreamName = "www.upstream.example."
	upstreamIP   = "192.0.2.53"
)

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{seen: map[string]int{}}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		u.mu.Lock()
		u.seen[strings.ToLower(q.Name)]++
		u.mu.Unlock()
		switch {
		case strings.EqualFold(q.Name, upstreamName) && q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(upstreamName + " 60 IN A " + upstreamIP)
			m.Answer = append(m.Answer, rr)
		case strings.EqualFold(q.Name, upstreamName):
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	port := harness.FreeDNSPort(t, "127.0.0.1")
	u.addr = "127.0.0.1:" + strconv.Itoa(port)
	for _, network := range []string{"udp", "tcp"} {
		started := make(chan error, 1)
		s := &dns.Server{Addr: u.addr, Net: network, Handler: handler, NotifyStartedFunc: func() { started <- nil }}
		go func() {
			if err := s.ListenAndServe(); err != nil {
				started <- err
			}
		}()
		if err := <-started; err != nil {
			t.Fatalf("upstream %s/%s: %v", u.addr, network, err)
		}
		t.Cleanup(func() { s.Shutdown() })
	}
	return u
}

// asked returns how often the upstream was asked name.
func (u *upstream) asked(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[strings.ToLower(dns.Fqdn(name))]
}
