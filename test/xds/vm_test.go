package xds

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// certLifetime is the cert_lifetime the test adds to docs/vm/Corefile.
// istiod honours any lifetime in whole seconds (it backdates NotBefore
// by two minutes and sets NotAfter to the request's time plus the
// lifetime); 30 s gives three certificates in about 30 s of test, with 15 s
// between renewals to spare on a loaded machine.
const certLifetime = 30 * time.Second

// The VM: a WorkloadGroup onboarded with istioctl, on a machine whose host
// name is not the group's, so the node identity shows which one meshdns
// took.
var (
	vmGroup    = harness.WorkloadGroup{Namespace: "vm-ns", Name: "app", ServiceAccount: "app-sa"}
	vmHostname = "vm1"
)

// vmResolvConf is the VM's /etc/resolv.conf as docs/vm.md writes it.
const vmResolvConf = "nameserver 127.0.0.2\nsearch vm-ns.svc.cluster.local svc.cluster.local cluster.local\n"

// The upstream's names: an external name, and the host of a ServiceEntry
// whose only address is a VIP istiod allocates, which the upstream knows
// under another address.
const (
	capturedHost = "api.example.com."
	capturedIP   = "192.0.2.99"
)

// vmFiles are the paths docs/vm/Corefile names, on this machine.
type vmFiles struct {
	istio    string // istioctl's files (/etc/meshdns/istio)
	certs    string // cert_dir (/var/lib/meshdns/certs)
	snapshot string // /var/lib/meshdns/snapshot.json
	upstream string // /etc/meshdns/upstream.conf
}

// renderVMCorefile writes docs/vm/Corefile with only its paths replaced,
// each exactly once (so a change to the file fails here rather than testing
// something else), and adds xdsLines to the xds block and meshdnsLines to
// the meshdns block. The ports stay as shipped: the VM has its own
// loopback.
func renderVMCorefile(t *testing.T, f vmFiles, xdsLines, meshdnsLines []string) string {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "vm", "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	replacements := []struct{ old, new string }{
		{"/etc/meshdns/istio", f.istio},
		{"/var/lib/meshdns/certs", f.certs},
		{"/var/lib/meshdns/snapshot.json", f.snapshot},
		{"/etc/meshdns/upstream.conf", f.upstream},
	}
	count := map[string]int{}
	var out []string
	for _, line := range strings.Split(string(tmpl), "\n") {
		code, comment, hasComment := strings.Cut(line, "#")
		for _, r := range replacements {
			count[r.old] += strings.Count(code, r.old)
			code = strings.ReplaceAll(code, r.old, r.new)
		}
		if hasComment {
			code += "#" + comment
		}
		out = append(out, code)
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		switch strings.TrimSpace(line) {
		case "cert_dir /var/lib/meshdns/certs":
			for _, l := range xdsLines {
				out = append(out, indent+l)
			}
			count["xds"]++
		case "authoritative cluster.local":
			for _, l := range meshdnsLines {
				out = append(out, indent+l)
			}
			count["meshdns"]++
		}
	}
	for _, k := range []string{"/etc/meshdns/istio", "/var/lib/meshdns/certs", "/var/lib/meshdns/snapshot.json", "/etc/meshdns/upstream.conf", "xds", "meshdns"} {
		if count[k] != 1 {
			t.Fatalf("docs/vm/Corefile: %q found %d times outside comments, want once; the file changed:\n%s", k, count[k], tmpl)
		}
	}
	rendered := strings.Join(out, "\n")
	for _, line := range out {
		code, _, _ := strings.Cut(line, "#")
		if m := regexp.MustCompile(`\s(/etc/|/var/)`).FindString(code); m != "" {
			t.Fatalf("rendered docs/vm/Corefile still has %q in %q:\n%s", m, line, rendered)
		}
	}
	for _, want := range []string{"bind 127.0.0.2\n", "ready 127.0.0.1:8181\n", "prometheus 127.0.0.1:9153\n", ".:53 {\n"} {
		if !strings.Contains(rendered, want) {
			t.Fatalf("docs/vm/Corefile has no %q:\n%s", want, rendered)
		}
	}
	path := filepath.Join(t.TempDir(), "Corefile")
	if err := os.WriteFile(path, []byte(rendered), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("docs/vm/Corefile rendered as %s:\n%s", path, rendered)
	return path
}

// vmResolver is bin/coredns running docs/vm/Corefile inside a VM, as its
// resolver on 127.0.0.2:53.
type vmResolver struct {
	vm       *harness.VM
	files    vmFiles
	corefile string
	log      string
	p        *harness.Process
}

// newVMResolver prepares a resolver for v: a copy of istioctl's files (the
// test changes them), an empty state directory, upstream.conf naming
// upstream (an IP, port 53), and the rendered Corefile.
func newVMResolver(t *testing.T, v *harness.VM, istio, upstream string, xdsLines, meshdnsLines []string) *vmResolver {
	t.Helper()
	dir := t.TempDir()
	f := vmFiles{
		istio:    filepath.Join(dir, "etc", "istio"),
		certs:    filepath.Join(dir, "state", "certs"),
		snapshot: filepath.Join(dir, "state", "snapshot.json"),
		upstream: filepath.Join(dir, "etc", "upstream.conf"),
	}
	copyDir(t, istio, f.istio)
	// The state directory exists (systemd's StateDirectory), cert_dir not.
	if err := os.MkdirAll(filepath.Dir(f.snapshot), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.upstream, []byte("nameserver "+upstream+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &vmResolver{vm: v, files: f, corefile: renderVMCorefile(t, f, xdsLines, meshdnsLines), log: filepath.Join(dir, "coredns.log")}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// start runs the resolver and, if waitReady, waits until the ready plugin
// says OK. It is stopped when the test ends.
func (r *vmResolver) start(t *testing.T, waitReady bool) {
	t.Helper()
	p, err := r.vm.Start("coredns", []string{harness.CoreDNSBinary(t), "-conf", r.corefile}, r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("last lines of the coredns log of VM %s (%s):\n%s", r.vm.Hostname, r.corefile, p.LogTail(40))
		}
	})
	if !waitReady {
		return
	}
	begin := time.Now()
	deadline := begin.Add(time.Minute)
	for !r.ready() {
		if p.Exited() {
			t.Fatalf("coredns in VM %s exited: %v\n%s", r.vm.Hostname, p.Err(), p.LogTail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("coredns in VM %s not ready after a minute:\n%s", r.vm.Hostname, p.LogTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("coredns ready in VM %s in %s", r.vm.Hostname, time.Since(begin).Round(time.Millisecond))
}

func (r *vmResolver) stop() { r.p.Stop() }

// ready reports whether the ready plugin (127.0.0.1:8181 in the VM) says OK.
func (r *vmResolver) ready() bool {
	code, _, _ := r.vm.HTTPGet("http://127.0.0.1:8181/ready")
	return code == http.StatusOK
}

// metric returns the value of the first sample of name whose labels include
// labels, from prometheus on 127.0.0.1:9153 in the VM. The xds source's
// name is left out of labels: the test does not assume it.
func (r *vmResolver) metric(name string, labels map[string]string) (float64, bool) {
	_, body, err := r.vm.HTTPGet("http://127.0.0.1:9153/metrics")
	if err != nil {
		return 0, false
	}
	return metricSample(body, name, labels)
}

// metricSample finds a sample in the Prometheus text format.
func metricSample(text, name string, labels map[string]string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		got := map[string]string{}
		if rest[0] == '{' {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			for _, m := range regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`).FindAllStringSubmatch(rest[1:end], -1) {
				got[m[1]] = m[2]
			}
			rest = rest[end+1:]
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		return v, err == nil
	}
	return 0, false
}

// waitMetric polls until cond holds for the metric's value, for up to d.
func (r *vmResolver) waitMetric(t *testing.T, name string, labels map[string]string, d time.Duration, what string, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := r.metric(name, labels)
		if ok && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM %s: %s%v = %v (present %v) after %s, want %s\n%s", r.vm.Hostname, name, labels, v, ok, d, what, r.p.LogTail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lookup is getent ahosts NAME in the VM; it fails the test on an error.
func lookup(t *testing.T, v *harness.VM, name string) (addrs, canonical string) {
	t.Helper()
	addrs, canonical, err := v.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return addrs, canonical
}

// readCert reads cert_dir: the leaf of cert-chain.pem, and key.pem's mode.
func readCert(t *testing.T, dir string) (*x509.Certificate, os.FileMode) {
	t.Helper()
	key, err := os.Stat(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatalf("cert_dir: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "cert-chain.pem"))
	if err != nil {
		t.Fatalf("cert_dir: %v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("cert_dir: cert-chain.pem is not PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("cert_dir: cert-chain.pem: %v", err)
	}
	return leaf, key.Mode().Perm()
}

// adsClient is a connection in istiod's /debug/adsz.
type adsClient struct {
	ConnectionID string            `json:"connectionId"`
	Address      string            `json:"address"`
	Labels       map[string]string `json:"labels"`
	Metadata     map[string]any    `json:"metadata"`
}

// istiodClients lists the xDS connections istiod has, from its debug
// endpoint (open to localhost).
func istiodClients(t *testing.T, istiod *harness.Istiod) []adsClient {
	t.Helper()
	resp, err := http.Get("http://" + istiod.HTTPAddr + "/debug/adsz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var clients struct {
		Clients []adsClient `json:"clients"`
	}
	if err := json.Unmarshal(b, &clients); err != nil {
		t.Fatalf("istiod /debug/adsz: %v: %s", err, b)
	}
	return clients.Clients
}

// TestVM runs docs/vm/Corefile as shipped (paths replaced, cert_lifetime
// added) in a VM onboarded as Istio's guide onboards one: the real istiod
// on the VM's link at :15012 over TLS, the files of the real istioctl for a
// real WorkloadGroup, and the VM's glibc resolving through meshdns.
func TestVM(t *testing.T) {
	harness.RequireVMs(t)
	cp := harness.Start(t)
	vm := harness.StartVM(t, vmHostname)
	istiod := harness.StartIstiodWith(t, cp, harness.IstiodConfig{TLSAddr: net.JoinHostPort(vm.HostIP.String(), "15012")})
	istioFiles := harness.OnboardVM(t, cp, vmGroup, vm.HostIP.String())
	up := startUpstreamAt(t, net.JoinHostPort(vm.HostIP.String(), "53"), map[string]string{
		upstreamName: upstreamIP, capturedHost: capturedIP,
	})
	vm.WriteResolvConf(vmResolvConf)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	a := &api{&harness.API{T: t, CP: cp, Ctx: ctx}}
	a.Namespace("bookinfo")
	reviewsIP := a.Service(clusterIPService("bookinfo", "reviews")).Spec.ClusterIP
	billingIP := a.Service(clusterIPService("vm-ns", "billing")).Spec.ClusterIP
	a.ServiceEntry(serviceEntry("bookinfo", "static", staticRes, []string{"static.example.com"}, "192.0.2.10"))
	a.ServiceEntry(serviceEntry("bookinfo", "api", dnsRes, []string{strings.TrimSuffix(capturedHost, ".")}))
	apiVIP := a.allocated("bookinfo", "api")[strings.TrimSuffix(capturedHost, ".")][0]
	table := map[string]string{
		svcHost("bookinfo", "reviews"): reviewsIP, svcHost("vm-ns", "billing"): billingIP,
		"static.example.com": "192.0.2.10", strings.TrimSuffix(capturedHost, "."): apiVIP,
	}

	res := newVMResolver(t, vm, istioFiles, vm.HostIP.String(), []string{fmt.Sprintf("cert_lifetime %ds", int(certLifetime.Seconds()))}, nil)
	res.start(t, true)
	started := time.Now()
	waitSnapshot(t, res.files.snapshot, "with the cluster's hosts", snapshotHas(table))
	firstExpiry, _ := res.metric("coredns_meshdns_xds_cert_expiry_timestamp_seconds", nil)

	t.Run("node identity", func(t *testing.T) {
		// Istio's agent defaults: the VM's address, its namespace, the
		// cluster; the name is the host name (or the group's). istiod names
		// a connection by the node id's NAME.NAMESPACE and a counter.
		var found bool
		for _, c := range istiodClients(t, istiod) {
			if host, _, _ := net.SplitHostPort(c.Address); host != vm.IP.String() {
				continue
			}
			found = true
			t.Logf("istiod's connection from the VM: %s from %s, metadata %v, labels %v", c.ConnectionID, c.Address, c.Metadata, c.Labels)
			id := c.ConnectionID[:max(strings.LastIndex(c.ConnectionID, "-"), 0)]
			if id != vmHostname+"."+vmGroup.Namespace && id != vmGroup.Name+"."+vmGroup.Namespace {
				t.Errorf("node %q, want %s.%s (the host name) or %s.%s (the group)", id, vmHostname, vmGroup.Namespace, vmGroup.Name, vmGroup.Namespace)
			}
			for k, want := range map[string]string{"NAMESPACE": vmGroup.Namespace, "CLUSTER_ID": "Kubernetes", "DNS_CAPTURE": "true"} {
				if got := fmt.Sprint(c.Metadata[k]); got != want {
					t.Errorf("node metadata %s = %q, want %q", k, got, want)
				}
			}
			// Only the VM's address: not loopback, not eth0's link-local IPv6.
			if got := fmt.Sprint(c.Metadata["INSTANCE_IPS"]); got != vm.IP.String() {
				t.Errorf("node metadata INSTANCE_IPS = %q, want %q", got, vm.IP)
			}
		}
		if !found {
			t.Errorf("istiod has no connection from %s: %+v", vm.IP, istiodClients(t, istiod))
		}
		// --autoregister: istiod registers the VM as a WorkloadEntry of its
		// group when the node's metadata names the group. Reported, not
		// required.
		wes, err := cp.Istio.NetworkingV1().WorkloadEntries(vmGroup.Namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, we := range wes.Items {
				t.Logf("WorkloadEntry %s/%s: address %s, labels %v", we.Namespace, we.Name, we.Spec.Address, we.Spec.Labels)
			}
			if len(wes.Items) == 0 {
				t.Logf("no WorkloadEntry in %s: istiod did not auto-register the VM", vmGroup.Namespace)
			}
		}
	})

	t.Run("glibc resolves", func(t *testing.T) {
		cases := []struct{ name, want, canonical string }{
			{"reviews.bookinfo", reviewsIP, ""},                     // a short name, as it is
			{"reviews.bookinfo.svc.cluster.local", reviewsIP, ""},   // the FQDN
			{"billing", billingIP, svcHost("vm-ns", "billing")},     // the VM's namespace, by the search list
			{"billing.vm-ns", billingIP, ""},                        // a short name
			{"kubernetes.default", "10.96.0.1", ""},                 // the API server's Service
			{"static.example.com", "192.0.2.10", ""},                // a ServiceEntry's address
			{strings.TrimSuffix(capturedHost, "."), apiVIP, ""},     // istiod's VIP for a ServiceEntry host
			{strings.TrimSuffix(upstreamName, "."), upstreamIP, ""}, // external: forward to upstream.conf
			{"nothing.bookinfo.svc.cluster.local", "NOTFOUND", ""},  // authoritative cluster.local
			{"reviews", "NOTFOUND", ""},                             // bookinfo is not the VM's namespace
			{"nothing.upstream.example", "NOTFOUND", ""},            // the upstream's NXDOMAIN
		}
		for _, c := range cases {
			got, canonical := lookup(t, vm, c.name)
			if got != c.want || (c.canonical != "" && canonical != c.canonical) {
				t.Errorf("getent ahosts %s in the VM = %q (canonical %q), want %q %s", c.name, got, canonical, c.want, c.canonical)
			}
		}
		if up.asked(upstreamName) == 0 {
			t.Errorf("the upstream was never asked %s", upstreamName)
		}
		for _, name := range []string{capturedHost, svcHost("bookinfo", "reviews"), "nothing.bookinfo.svc.cluster.local"} {
			if n := up.asked(name); n != 0 {
				t.Errorf("the upstream was asked %s %d times, want never: meshdns answers it", name, n)
			}
		}
		// With a pod's ndots:5 the first try is reviews.bookinfo under the
		// first search domain: meshdns short-cuts it to the service.
		vm.WriteResolvConf(vmResolvConf + "options ndots:5\n")
		defer vm.WriteResolvConf(vmResolvConf)
		if got, canonical := lookup(t, vm, "reviews.bookinfo"); got != reviewsIP || canonical != svcHost("bookinfo", "reviews") {
			t.Errorf("with ndots:5, getent ahosts reviews.bookinfo = %q (canonical %q), want %s (%s)", got, canonical, reviewsIP, svcHost("bookinfo", "reviews"))
		}
	})

	t.Run("capture off", func(t *testing.T) {
		// Another VM of the group whose resolver says capture off: the host
		// whose only address is istiod's VIP goes to the upstream; what has
		// real addresses is still answered.
		vm2 := harness.StartVM(t, "vm2")
		vm2.WriteResolvConf(vmResolvConf)
		// Its upstream is the first VM's: the routes meet on this machine.
		off := newVMResolver(t, vm2, istioFiles, vm.HostIP.String(), nil, []string{"capture off"})
		off.start(t, true)
		waitSnapshot(t, off.files.snapshot, "with the cluster's hosts", snapshotHas(map[string]string{
			svcHost("bookinfo", "reviews"): reviewsIP, "static.example.com": "192.0.2.10"}))
		for name, want := range map[string]string{
			strings.TrimSuffix(capturedHost, "."): capturedIP,
			"static.example.com":                  "192.0.2.10",
			"reviews.bookinfo":                    reviewsIP,
		} {
			if got, _ := lookup(t, vm2, name); got != want {
				t.Errorf("capture off: getent ahosts %s = %q, want %q", name, got, want)
			}
		}
		if up.asked(capturedHost) == 0 {
			t.Errorf("capture off: the upstream was never asked %s", capturedHost)
		}
		if s, err := readSnapshot(off.files.snapshot); err == nil {
			ips, ok := s.ips(strings.TrimSuffix(capturedHost, "."))
			t.Logf("capture off: the snapshot has %s: %v %q (istiod sent %s)", capturedHost, ok, ips, apiVIP)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		badInput(t, cp, vm, istioFiles, res)
	})

	t.Run("certificate renewals", func(t *testing.T) {
		// The first issue and two renewals, at half the remaining lifetime.
		okLabels := map[string]string{"result": "ok"}
		res.waitMetric(t, "coredns_meshdns_xds_cert_renewals_total", okLabels, max(time.Until(started.Add(3*certLifetime)), settle), "at least 3",
			func(v float64) bool { return v >= 3 })
		t.Logf("3 certificates in %s", time.Since(started).Round(time.Second))
		if n, ok := res.metric("coredns_meshdns_xds_cert_renewals_total", map[string]string{"result": "error"}); ok && n != 0 {
			t.Errorf("%v renewals failed", n)
		}
		leaf, mode := readCert(t, res.files.certs)
		if mode != 0o600 {
			t.Errorf("key.pem has mode %o, want 600", mode)
		}
		spiffe := "spiffe://cluster.local/ns/" + vmGroup.Namespace + "/sa/" + vmGroup.ServiceAccount
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffe {
			t.Errorf("certificate for %v, want %s", leaf.URIs, spiffe)
		}
		rootPEM, _ := os.ReadFile(filepath.Join(res.files.istio, "root-cert.pem"))
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(rootPEM)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("cert-chain.pem does not verify against root-cert.pem: %v", err)
		}
		// istiod backdates NotBefore by two minutes.
		if d := leaf.NotAfter.Sub(leaf.NotBefore); d < certLifetime+2*time.Minute-5*time.Second || d > certLifetime+2*time.Minute+5*time.Second {
			t.Errorf("certificate valid for %s, want cert_lifetime %s plus istiod's 2 min backdating", d, certLifetime)
		}
		expiry, _ := res.metric("coredns_meshdns_xds_cert_expiry_timestamp_seconds", nil)
		if expiry <= firstExpiry {
			t.Errorf("cert_expiry_timestamp_seconds = %v, first %v: it did not move", expiry, firstExpiry)
		}
		// The metric is the certificate in cert_dir (a renewal may come
		// between two reads).
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaf, _ := readCert(t, res.files.certs)
			expiry, _ := res.metric("coredns_meshdns_xds_cert_expiry_timestamp_seconds", nil)
			if int64(expiry) == leaf.NotAfter.Unix() {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("cert_expiry_timestamp_seconds = %v, cert-chain.pem's NotAfter %d", expiry, leaf.NotAfter.Unix())
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("istiod restarted, token garbage", func(t *testing.T) {
		// From now on only the certificate can get meshdns anywhere.
		if err := os.WriteFile(filepath.Join(res.files.istio, "istio-token"), []byte("garbage\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		reconnects, _ := res.metric("coredns_meshdns_xds_reconnects_total", nil)
		oks, _ := res.metric("coredns_meshdns_xds_cert_renewals_total", map[string]string{"result": "ok"})
		istiod.Restart()
		res.waitMetric(t, "coredns_meshdns_xds_reconnects_total", nil, settle, "more than before", func(v float64) bool { return v > reconnects })
		res.waitMetric(t, "coredns_meshdns_source_up", nil, settle, "1", func(v float64) bool { return v == 1 })
		ratingsIP := a.Service(clusterIPService("bookinfo", "ratings")).Spec.ClusterIP
		waitSnapshot(t, res.files.snapshot, "with ratings", snapshotHas(map[string]string{svcHost("bookinfo", "ratings"): ratingsIP}))
		if got, _ := lookup(t, vm, "ratings.bookinfo"); got != ratingsIP {
			t.Errorf("getent ahosts ratings.bookinfo after istiod's restart = %q, want %s", got, ratingsIP)
		}
		// Renewed by the restarted istiod, over mTLS.
		res.waitMetric(t, "coredns_meshdns_xds_cert_renewals_total", map[string]string{"result": "ok"}, certLifetime, "a renewal after the restart",
			func(v float64) bool { return v > oks })
	})

	t.Run("meshdns restarted from cert_dir", func(t *testing.T) {
		res.stop()
		if _, mode := readCert(t, res.files.certs); mode != 0o600 {
			t.Errorf("key.pem has mode %o, want 600", mode)
		}
		res.start(t, true)
		res.waitMetric(t, "coredns_meshdns_source_up", nil, settle, "1", func(v float64) bool { return v == 1 })
		res.waitMetric(t, "coredns_meshdns_xds_pushes_total", map[string]string{"result": "ack"}, settle, "a push", func(v float64) bool { return v >= 1 })
		detailsIP := a.Service(clusterIPService("bookinfo", "details")).Spec.ClusterIP
		waitSnapshot(t, res.files.snapshot, "with details", snapshotHas(map[string]string{svcHost("bookinfo", "details"): detailsIP}))
		if got, _ := lookup(t, vm, "details.bookinfo"); got != detailsIP {
			t.Errorf("getent ahosts details.bookinfo after meshdns's restart = %q, want %s", got, detailsIP)
		}
		if _, mode := readCert(t, res.files.certs); mode != 0o600 {
			t.Errorf("key.pem has mode %o, want 600", mode)
		}
	})
}

// badInput starts a resolver per case, each in a VM of its own with a copy
// of the good files changed one way, and checks that it either refuses to
// start naming the file, or starts, says why in its log, reports the
// source down and serves the snapshot good's resolver wrote.
func badInput(t *testing.T, cp *harness.ControlPlane, vm *harness.VM, istioFiles string, good *vmResolver) {
	rewrite := func(name string, f func(string) string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(f(string(b))), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	expired := cp.ExpiredToken(t, vmGroup.Namespace, vmGroup.ServiceAccount, "istio-ca")
	cases := []struct {
		name   string
		change func(t *testing.T, dir string)
		// startup: the file a start-up error must name, with these words.
		startup string
		words   []string
		// Otherwise at run time: what the log must say.
		log string
	}{
		{
			name:   "root that does not verify istiod",
			change: rewrite("root-cert.pem", func(string) string { return string(selfSignedCA(t)) }),
			log:    "certificate signed by unknown authority",
		},
		{
			name: "mesh.yaml without discoveryAddress",
			change: rewrite("mesh.yaml", func(s string) string {
				return regexp.MustCompile(`(?m)^\s*discoveryAddress:.*\n`).ReplaceAllString(s, "")
			}),
			startup: "mesh.yaml", words: []string{"discoveryAddress"},
		},
		{
			name:    "cluster.env that does not parse",
			change:  rewrite("cluster.env", func(s string) string { return s + "POD_NAMESPACE='vm-ns\n" }),
			startup: "cluster.env",
		},
		{
			name:    "garbage token, no certificate",
			change:  rewrite("istio-token", func(string) string { return "garbage\n" }),
			startup: "istio-token", words: []string{"not a JWT"},
		},
		{
			name:    "expired token, no certificate",
			change:  rewrite("istio-token", func(string) string { return expired }),
			startup: "istio-token", words: []string{"expired"},
		},
	}
	snapshot, err := os.ReadFile(good.files.snapshot)
	if err != nil {
		t.Fatal(err)
	}
	reviews := svcHost("bookinfo", "reviews")
	want, ok := snapshotFrom(t, snapshot).ips(reviews)
	if !ok {
		t.Fatalf("the good resolver's snapshot has no %s", reviews)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := harness.StartVM(t, "bad")
			v.WriteResolvConf(vmResolvConf)
			r := newVMResolver(t, v, istioFiles, vm.HostIP.String(), nil, nil)
			c.change(t, r.files.istio)
			if c.startup != "" {
				r.start(t, false)
				for deadline := time.Now().Add(30 * time.Second); !r.p.WaitExit(100 * time.Millisecond); {
					if r.ready() || time.Now().After(deadline) {
						t.Fatalf("coredns started with a bad %s:\n%s", c.startup, r.p.LogTail(20))
					}
				}
				log := r.p.LogTail(20)
				if r.p.Err() == nil {
					t.Errorf("coredns exited 0 with a bad %s", c.startup)
				}
				for _, w := range append([]string{c.startup}, c.words...) {
					if !strings.Contains(log, w) {
						t.Errorf("the start-up error does not say %q:\n%s", w, log)
					}
				}
				return
			}
			// The last table, from the snapshot, serves while istiod refuses.
			if err := os.WriteFile(r.files.snapshot, snapshot, 0o600); err != nil {
				t.Fatal(err)
			}
			r.start(t, true)
			if got, _ := lookup(t, v, "reviews.bookinfo"); got != want {
				t.Errorf("getent ahosts reviews.bookinfo = %q, want %q from the snapshot", got, want)
			}
			r.waitMetric(t, "coredns_meshdns_xds_cert_renewals_total", map[string]string{"result": "error"}, settle, "at least 1",
				func(v float64) bool { return v >= 1 })
			deadline := time.Now().Add(settle)
			for !strings.Contains(r.p.LogTail(200), c.log) {
				if time.Now().After(deadline) {
					t.Fatalf("no %q in the log after %s:\n%s", c.log, settle, r.p.LogTail(20))
				}
				time.Sleep(100 * time.Millisecond)
			}
			if up, ok := r.metric("coredns_meshdns_source_up", nil); !ok || up != 0 {
				t.Errorf("source_up = %v (present %v), want 0", up, ok)
			}
			if n, ok := r.metric("coredns_meshdns_xds_cert_renewals_total", map[string]string{"result": "ok"}); ok && n != 0 {
				t.Errorf("%v certificates issued", n)
			}
			if _, err := os.Stat(filepath.Join(r.files.certs, "cert-chain.pem")); err == nil {
				t.Errorf("cert_dir has a certificate")
			}
		})
	}
}

func snapshotFrom(t *testing.T, b []byte) snapshot {
	t.Helper()
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}
