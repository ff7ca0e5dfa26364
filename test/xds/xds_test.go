// Package xds tests meshdns's xds source end to end: a real istiod
// (bin/pilot-discovery) watching a real kube-apiserver and etcd
// (test/harness), the built bin/coredns with an xds source, and DNS queries
// over UDP and TCP. TestXDS's TLS case gives istiod's address, root and token
// as xds options; TestVM runs docs/vm/Corefile as shipped, in a VM onboarded
// with istioctl.
package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// The workload meshdns runs for: a VM in namespace vm-ns. Its IP is only
// node metadata (istiod filters addresses by its family); nothing
// connects to it.
var vm1 = vmIdentity{ip: "10.0.0.5", name: "vm1", namespace: "vm-ns"}

// The cache keys of the token VM's server, one per phase of
// TestXDS/lifecycle, so no phase sees another's cached answers.
var (
	keyCreated = cacheKey{}
	keyUpdated = cacheKey{do: true}
	keyDeleted = cacheKey{cd: true}
	keyOutage  = cacheKey{do: true, cd: true}
)

func TestXDS(t *testing.T) {
	cp := harness.Start(t)
	istiod := harness.StartIstiod(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	on := func(t *testing.T) *api { return &api{&harness.API{T: t, CP: cp, Ctx: ctx}} }
	on(t).Namespace("bookinfo")
	root := istiod.RootCert()
	token := cp.CreateToken(t, vm1.namespace, vm1.name, "istio-ca")
	up := startUpstream(t)

	// Plaintext, the node namespace given in the xds block.
	plain := harness.StartCoreDNS(t, fmt.Sprintf("xds %s {\n insecure\n node_ip %s\n workload %s\n namespace %s\n}",
		istiod.PlaintextAddr, vm1.ip, vm1.name, vm1.namespace))
	plainSrc := "xds:" + istiod.PlaintextAddr
	// TLS with a token, docs/vm/Corefile's server with explicit options.
	vmc := writeTokenVM(t, istiod.TLSAddr, vm1, root, token, up.addr)
	vmDNS := vmc.start(t)

	const kubeDefault = "kubernetes.default.svc.cluster.local"

	t.Run("token VM", func(t *testing.T) {
		// Mesh names from istiod over TLS, with the default search list.
		expectNow(t, vmDNS.Addr, kubeDefault, dns.TypeA, keyCreated, "10.96.0.1")
		expectNow(t, vmDNS.Addr, "kubernetes.default.vm-ns.svc.cluster.local", dns.TypeA, keyCreated,
			"10.96.0.1 CNAME "+kubeDefault+".")
		// Everything else goes to the upstream...
		expectNow(t, vmDNS.Addr, upstreamName, dns.TypeA, keyCreated, upstreamIP)
		expectNow(t, vmDNS.Addr, "nothing.upstream.example", dns.TypeA, keyCreated, "NXDOMAIN")
		if up.asked(upstreamName) == 0 || up.asked("nothing.upstream.example") == 0 {
			t.Errorf("the upstream was not asked the names meshdns does not serve")
		}
		// ...except unknown names of the cluster domain, answered locally,
		// and mesh names.
		expectNow(t, vmDNS.Addr, "nothing.vm-ns.svc.cluster.local", dns.TypeA, keyCreated, "NXDOMAIN")
		for _, name := range []string{"nothing.vm-ns.svc.cluster.local", kubeDefault} {
			if n := up.asked(name); n != 0 {
				t.Errorf("the upstream was asked %s %d times, want never", name, n)
			}
		}
		if got := vmDNS.Metric(`coredns_meshdns_source_up{source="` + vmc.source + `"}`); got != "1" {
			t.Errorf("source_up of %s = %q, want 1", vmc.source, got)
		}
		if got := vmDNS.Metric(`coredns_meshdns_xds_pushes_total{result="ack",source="` + vmc.source + `"}`); got == "" || got == "0" {
			t.Errorf("no push ACKed by %s: %q", vmc.source, got)
		}
	})

	// Left by lifecycle for the outage.
	var reviews *corev1.Service

	t.Run("lifecycle", func(t *testing.T) {
		a := on(t)
		// Created: a dual-stack Service, a ServiceEntry whose addresses istiod
		// allocates, one with spec addresses, a headless Service.
		reviews = a.Service(dualStackService("bookinfo", "reviews"))
		a.ServiceEntry(serviceEntry("bookinfo", "api", dnsRes, []string{"api.example.com"}))
		a.ServiceEntry(serviceEntry("bookinfo", "static", staticRes, []string{"static.example.com"}, "192.0.2.10"))
		a.Service(headlessService("bookinfo", "db", false))
		a.Slice(endpointSlice("bookinfo", "db-1", "db", ep{"mysql-0", "10.1.0.1", true}, ep{"mysql-1", "10.1.0.2", false}))
		apiVIP := a.allocated("bookinfo", "api")["api.example.com"][0]
		v4 := reviews.Spec.ClusterIPs[0]
		reviewsHost, dbHost := svcHost("bookinfo", "reviews"), svcHost("bookinfo", "db")

		// The node is IPv4: istiod sends only the IPv4 addresses.
		expectA(t, plain.Addr, reviewsHost, v4, "NODATA")
		expect(t, plain.Addr, "reviews.bookinfo", dns.TypeA, v4)
		expectA(t, plain.Addr, "api.example.com", apiVIP, "NODATA")
		expect(t, plain.Addr, "static.example.com", dns.TypeA, "192.0.2.10")
		expect(t, plain.Addr, dbHost, dns.TypeA, "10.1.0.1")
		waitSnapshot(t, vmc.snapshot, "created", snapshotHas(map[string]string{
			reviewsHost: v4, "api.example.com": apiVIP, "static.example.com": "192.0.2.10", dbHost: "10.1.0.1"}))
		expectNow(t, vmDNS.Addr, reviewsHost, dns.TypeA, keyCreated, v4)
		expectNow(t, vmDNS.Addr, reviewsHost, dns.TypeAAAA, keyCreated, "NODATA")
		expectNow(t, vmDNS.Addr, "reviews.bookinfo", dns.TypeA, keyCreated, v4)
		expectNow(t, vmDNS.Addr, "api.example.com", dns.TypeA, keyCreated, apiVIP)
		expectNow(t, vmDNS.Addr, "static.example.com", dns.TypeA, keyCreated, "192.0.2.10")
		expectNow(t, vmDNS.Addr, dbHost, dns.TypeA, keyCreated, "10.1.0.1")

		// Updated: new addresses and a new host, an endpoint ready, a Service
		// no longer exported to the node's namespace.
		a.UpdateServiceEntry("bookinfo", "static", func(se *networkingv1.ServiceEntry) {
			se.Spec.Addresses = []string{"192.0.2.11"}
			se.Spec.Hosts = append(se.Spec.Hosts, "static2.example.com")
		})
		a.UpdateSlice(endpointSlice("bookinfo", "db-1", "db", ep{"mysql-0", "10.1.0.1", true}, ep{"mysql-1", "10.1.0.2", true}))
		a.UpdateService("bookinfo", "reviews", func(s *corev1.Service) {
			s.Annotations = map[string]string{"networking.istio.io/exportTo": "."}
		})
		expect(t, plain.Addr, "static.example.com", dns.TypeA, "192.0.2.11")
		expect(t, plain.Addr, "static2.example.com", dns.TypeA, "192.0.2.11")
		expect(t, plain.Addr, dbHost, dns.TypeA, "10.1.0.1 10.1.0.2")
		expect(t, plain.Addr, reviewsHost, dns.TypeA, "NXDOMAIN")
		expect(t, plain.Addr, "reviews.bookinfo", dns.TypeA, "NXDOMAIN")
		waitSnapshot(t, vmc.snapshot, "updated", snapshotHas(map[string]string{
			"static.example.com": "192.0.2.11", "static2.example.com": "192.0.2.11", dbHost: "10.1.0.1 10.1.0.2", reviewsHost: "-"}))
		expectNow(t, vmDNS.Addr, "static.example.com", dns.TypeA, keyUpdated, "192.0.2.11")
		expectNow(t, vmDNS.Addr, "static2.example.com", dns.TypeA, keyUpdated, "192.0.2.11")
		expectNow(t, vmDNS.Addr, dbHost, dns.TypeA, keyUpdated, "10.1.0.1 10.1.0.2")
		expectNow(t, vmDNS.Addr, reviewsHost, dns.TypeA, keyUpdated, "NXDOMAIN")

		// Deleted; and the Service exported again.
		a.DeleteServiceEntry("bookinfo", "static")
		a.DeleteServiceEntry("bookinfo", "api")
		a.DeleteService("bookinfo", "db")
		a.UpdateService("bookinfo", "reviews", func(s *corev1.Service) { s.Annotations = nil })
		for _, name := range []string{"static.example.com", "static2.example.com", "api.example.com", dbHost} {
			expect(t, plain.Addr, name, dns.TypeA, "NXDOMAIN")
		}
		expect(t, plain.Addr, reviewsHost, dns.TypeA, v4)
		waitSnapshot(t, vmc.snapshot, "deleted", snapshotHas(map[string]string{
			"static.example.com": "-", "static2.example.com": "-", "api.example.com": "-", dbHost: "-", reviewsHost: v4}))
		for _, name := range []string{"static.example.com", "static2.example.com", "api.example.com", dbHost} {
			expectNow(t, vmDNS.Addr, name, dns.TypeA, keyDeleted, "NXDOMAIN")
		}
		expectNow(t, vmDNS.Addr, reviewsHost, dns.TypeA, keyDeleted, v4)
	})
	if t.Failed() {
		return
	}

	t.Run("push without change keeps the snapshot", func(t *testing.T) {
		a := on(t)
		before, err := os.Stat(vmc.snapshot)
		if err != nil {
			t.Fatal(err)
		}
		ack := `coredns_meshdns_xds_pushes_total{result="ack",source="` + vmc.source + `"}`
		acked, _ := strconv.ParseFloat(vmDNS.Metric(ack), 64)
		// A new port: istiod pushes (the Service is visible to the node),
		// and the name table, which has no ports, is the same.
		a.UpdateService("bookinfo", "reviews", func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "grpc", Port: 9090})
		})
		waitMetricAtLeast(t, vmDNS, ack, acked+1)
		after, err := os.Stat(vmc.snapshot)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("snapshot rewritten by a push that changed nothing (%s, then %s)", before.ModTime(), after.ModTime())
		}
	})

	t.Run("refused", func(t *testing.T) {
		// A CA that did not sign istiod's certificate; a token of another
		// namespace than the node's. istiod is up and serving the VM above.
		wrongCA := writeFile(t, "wrong-ca.pem", selfSignedCA(t))
		otherToken := writeFile(t, "other-token", []byte(cp.CreateToken(t, "other-ns", vm1.name, "istio-ca")))
		rootFile := writeFile(t, "root.pem", root)
		goodToken := writeFile(t, "token", []byte(token))
		cases := []struct {
			name, ca, token, refusal string
		}{
			{"wrong CA", wrongCA, goodToken, "certificate signed by unknown authority"},
			{"token of another namespace", rootFile, otherToken, "PermissionDenied"},
		}
		servers := make([]unready, len(cases))
		for i, c := range cases {
			servers[i] = startUnready(t, fmt.Sprintf("xds %s {\n tls %s\n token %s\n server_name %s\n node_ip %s\n workload %s\n namespace %s\n}",
				istiod.TLSAddr, c.ca, c.token, harness.IstiodServerName, vm1.ip, vm1.name, vm1.namespace))
		}
		src := "xds:" + istiod.TLSAddr
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				s := servers[i]
				// Refused once, then again after a reconnect.
				waitLog(t, s.CoreDNS, c.refusal)
				waitMetricAtLeast(t, s.CoreDNS, `coredns_meshdns_xds_reconnects_total{source="`+src+`"}`, 1)
				for _, name := range []string{kubeDefault, svcHost("bookinfo", "reviews")} {
					for _, network := range []string{"udp", "tcp"} {
						if got := answer(s.Addr, name, dns.TypeA, network); got != "SERVFAIL" {
							t.Errorf("%s over %s = %q, want SERVFAIL: nothing may be served from a refused stream", name, network, got)
						}
					}
				}
				if got := s.Metric(`coredns_meshdns_source_up{source="` + src + `"}`); got != "0" {
					t.Errorf("source_up = %q, want 0", got)
				}
				if got := s.Metric(`coredns_meshdns_xds_pushes_total{result="ack",source="` + src + `"}`); got != "" && got != "0" {
					t.Errorf("pushes ACKed on a refused stream: %s", got)
				}
				if got := s.Metric(`coredns_meshdns_entries{source="` + src + `"}`); got != "" && got != "0" {
					t.Errorf("entries = %s, want none", got)
				}
				if strings.Contains(s.Log(100), src+": loaded") {
					t.Errorf("the source says it loaded:\n%s", s.Log(20))
				}
				if s.isReady() {
					t.Errorf("the ready plugin says OK")
				}
			})
		}

		// The token is read at every connection: once the file holds a
		// token of the node's namespace, the next attempt is accepted.
		t.Run("rotated token", func(t *testing.T) {
			s := servers[1]
			if err := os.WriteFile(otherToken, []byte(token), 0o600); err != nil {
				t.Fatal(err)
			}
			// The wait before the next attempt has grown to a few seconds.
			deadline := time.Now().Add(45 * time.Second)
			for answer(s.Addr, kubeDefault, dns.TypeA, "udp") != "10.96.0.1" {
				if time.Now().After(deadline) {
					t.Fatalf("%s not answered after the token was replaced:\n%s", kubeDefault, s.Log(10))
				}
				time.Sleep(100 * time.Millisecond)
			}
			expect(t, s.Addr, kubeDefault, dns.TypeA, "10.96.0.1")
			waitMetric(t, s.CoreDNS, `coredns_meshdns_source_up{source="`+src+`"}`, "1")
			if !s.isReady() {
				t.Errorf("the ready plugin does not say OK after the first push")
			}
		})
	})

	t.Run("istiod outage and snapshot boot", func(t *testing.T) {
		a := on(t)
		reviewsHost, v4 := svcHost("bookinfo", "reviews"), reviews.Spec.ClusterIPs[0]
		updates := func(op string) int {
			n, _ := strconv.Atoi(plain.Metric(`coredns_meshdns_updates_total{op="` + op + `",source="` + plainSrc + `"}`))
			return n
		}
		added, changed, deleted := updates("add"), updates("change"), updates("delete")

		istiod.Stop()
		// Answers go on, unchanged.
		for range 10 {
			for _, network := range []string{"udp", "tcp"} {
				if got := answer(plain.Addr, reviewsHost, dns.TypeA, network); got != v4 {
					t.Fatalf("during the outage %s over %s = %q, want %q", reviewsHost, network, got, v4)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		expectNow(t, vmDNS.Addr, reviewsHost, dns.TypeA, keyOutage, v4)
		waitMetric(t, plain, `coredns_meshdns_source_up{source="`+plainSrc+`"}`, "0")
		waitMetric(t, vmDNS, `coredns_meshdns_source_up{source="`+vmc.source+`"}`, "0")

		// The VM reboots while istiod is away: the same Corefile serves the
		// snapshot its previous run wrote.
		vmDNS.Stop()
		vmDNS = vmc.start(t)
		if !strings.Contains(vmDNS.Log(50), "serving snapshot "+vmc.snapshot) {
			t.Errorf("no log line about the snapshot:\n%s", vmDNS.Log(20))
		}
		expectNow(t, vmDNS.Addr, reviewsHost, dns.TypeA, keyCreated, v4)
		expectNow(t, vmDNS.Addr, kubeDefault, dns.TypeA, keyCreated, "10.96.0.1")
		if got := vmDNS.Metric(`coredns_meshdns_source_up{source="` + vmc.source + `"}`); got != "0" {
			t.Errorf("source_up = %q while istiod is down, want 0", got)
		}

		// Changes made while istiod is down arrive once it is back.
		ratings := a.Service(clusterIPService("bookinfo", "ratings"))
		a.DeleteService("bookinfo", "reviews")
		ratingsHost := svcHost("bookinfo", "ratings")
		if got := answer(plain.Addr, ratingsHost, dns.TypeA, "udp"); got != "NXDOMAIN" {
			t.Errorf("%s = %q while istiod is down, want NXDOMAIN", ratingsHost, got)
		}
		down := time.Now()
		istiod.Restart()
		expect(t, plain.Addr, ratingsHost, dns.TypeA, ratings.Spec.ClusterIPs[0])
		expect(t, plain.Addr, reviewsHost, dns.TypeA, "NXDOMAIN")
		waitSnapshot(t, vmc.snapshot, "after the restart", snapshotHas(map[string]string{
			ratingsHost: ratings.Spec.ClusterIPs[0], reviewsHost: "-"}))
		t.Logf("updates resumed %s after istiod was started again", time.Since(down).Round(time.Millisecond))
		expectNow(t, vmDNS.Addr, ratingsHost, dns.TypeA, keyOutage, ratings.Spec.ClusterIPs[0])
		expectNow(t, vmDNS.Addr, reviewsHost, dns.TypeA, keyOutage, "NXDOMAIN")
		for _, s := range []struct {
			c   *harness.CoreDNS
			src string
		}{{plain, plainSrc}, {vmDNS, vmc.source}} {
			waitMetric(t, s.c, `coredns_meshdns_source_up{source="`+s.src+`"}`, "1")
			if n, _ := strconv.Atoi(s.c.Metric(`coredns_meshdns_xds_reconnects_total{source="` + s.src + `"}`)); n < 1 {
				t.Errorf("%s: no reconnect counted", s.src)
			}
		}
		// The new stream's first push is the whole table; only the
		// difference was applied.
		if d := [3]int{updates("add") - added, updates("change") - changed, updates("delete") - deleted}; d != [3]int{1, 0, 1} {
			t.Errorf("updates across the reconnect: %d added, %d changed, %d deleted; want 1, 0, 1", d[0], d[1], d[2])
		}
	})
}

// unready is a CoreDNS whose source is expected not to load.
type unready struct {
	*harness.CoreDNS
	ready string // its ready plugin's address
}

// isReady reports whether the ready plugin answers 200 OK.
func (u unready) isReady() bool {
	resp, err := http.Get("http://" + u.ready + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startUnready runs bin/coredns with a meshdns block of body that is
// expected not to load: it waits only until DNS is served.
func startUnready(t *testing.T, body string) unready {
	t.Helper()
	ports := harness.FreePorts(t, 3)
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	ready := "127.0.0.1:" + strconv.Itoa(ports[1])
	metrics := "127.0.0.1:" + strconv.Itoa(ports[2])
	corefile := fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\tready %s\n\tprometheus %s\n\tmeshdns {\n%s\n\t}\n}\n", ports[0], ready, metrics, body)
	c := harness.StartCoreDNSWith(t, harness.CoreDNSConfig{
		Corefile: writeFile(t, "Corefile", []byte(corefile)), Addr: addr, ReadyAddr: ready, MetricsAddr: metrics,
	})
	return unready{CoreDNS: c, ready: ready}
}

// waitLog polls the CoreDNS log until it contains s.
func waitLog(t *testing.T, c *harness.CoreDNS, s string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for !strings.Contains(c.Log(200), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the coredns log after %s:\n%s", s, settle, c.Log(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// selfSignedCA returns the PEM of a CA certificate unrelated to istiod's.
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"not istiod"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
