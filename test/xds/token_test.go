package xds

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// tokenAddr is the loopback address the token VM's server binds to, as
// docs/vm/Corefile does (on another port).
const tokenAddr = "127.0.0.2"

// tokenVM is a VM's Corefile with istiod's address, root and token written
// out as xds options instead of istio_vm_files, and no cert_dir: the token
// is sent on every connection. The same file is run again (after Stop) to
// boot from the snapshot the previous run wrote.
type tokenVM struct {
	corefile, snapshot string
	addr, ready        string
	metrics            string
	source             string // the xds source's name in metrics
}

// vmIdentity is a workload's node identity, given one by one.
type vmIdentity struct{ ip, name, namespace string }

// tokenCorefile is docs/vm/Corefile's server with explicit xds options.
const tokenCorefile = `.:%[1]s {
    bind %[2]s
    errors
    ready %[3]s
    prometheus %[4]s
    meshdns {
        namespace %[5]s
        xds %[6]s {
            node_ip %[7]s
            workload %[8]s
            tls %[9]s
            token %[10]s
            server_name %[11]s
            snapshot %[12]s
        }
        authoritative cluster.local
        fallthrough
    }
    cache 30
    forward . %[13]s
    loop
}
`

// writeTokenVM writes tokenCorefile for istiod's TLS address, the identity,
// istiod's root and a token, forwarding to upstream.
func writeTokenVM(t *testing.T, istiodTLS string, id vmIdentity, rootCert []byte, token, upstream string) *tokenVM {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ports := harness.FreePorts(t, 2)
	v := &tokenVM{
		snapshot: filepath.Join(dir, "snapshot.json"),
		addr:     net.JoinHostPort(tokenAddr, strconv.Itoa(harness.FreeDNSPort(t, tokenAddr))),
		ready:    "127.0.0.1:" + strconv.Itoa(ports[0]),
		metrics:  "127.0.0.1:" + strconv.Itoa(ports[1]),
		source:   "xds:" + istiodTLS,
	}
	_, dnsPort, _ := net.SplitHostPort(v.addr)
	out := fmt.Sprintf(tokenCorefile, dnsPort, tokenAddr, v.ready, v.metrics, id.namespace, istiodTLS, id.ip, id.name,
		write("root-cert.pem", rootCert), write("istio-token", []byte(token)), harness.IstiodServerName, v.snapshot, upstream)
	v.corefile = write("Corefile", []byte(out))
	t.Logf("token VM Corefile %s:\n%s", v.corefile, out)
	return v
}

// start runs the Corefile and waits for the ready plugin.
func (v *tokenVM) start(t *testing.T) *harness.CoreDNS {
	t.Helper()
	return harness.StartCoreDNSWith(t, harness.CoreDNSConfig{
		Corefile: v.corefile, Addr: v.addr, ReadyAddr: v.ready, MetricsAddr: v.metrics, WaitReady: true,
	})
}

// upstream is a VM's "real resolver": it answers A queries for the names
// of its records (NODATA for other types), NXDOMAIN for everything else,
// and records the names it was asked.
type upstream struct {
	addr    string
	records map[string]string
	mu      sync.Mutex
	seen    map[string]int
}

const (
	upstreamName = "www.upstream.example."
	upstreamIP   = "192.0.2.53"
)

// startUpstream runs an upstream that knows upstreamName on a free port of
// 127.0.0.1.
func startUpstream(t *testing.T) *upstream {
	t.Helper()
	port := harness.FreeDNSPort(t, "127.0.0.1")
	return startUpstreamAt(t, "127.0.0.1:"+strconv.Itoa(port), map[string]string{upstreamName: upstreamIP})
}

// startUpstreamAt runs an upstream with records (FQDN to IPv4) on addr,
// over UDP and TCP.
func startUpstreamAt(t *testing.T, addr string, records map[string]string) *upstream {
	t.Helper()
	u := &upstream{addr: addr, records: map[string]string{}, seen: map[string]int{}}
	for name, ip := range records {
		u.records[strings.ToLower(dns.Fqdn(name))] = ip
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		u.mu.Lock()
		u.seen[name]++
		u.mu.Unlock()
		ip, ok := u.records[name]
		switch {
		case ok && q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(q.Name + " 60 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		case ok:
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	harness.ServeDNS(t, addr, handler)
	return u
}

// asked returns how often the upstream was asked name.
func (u *upstream) asked(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[strings.ToLower(dns.Fqdn(name))]
}
