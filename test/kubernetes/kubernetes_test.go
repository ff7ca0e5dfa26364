// Package kubernetes tests meshdns's kubernetes source end to end: a real
// kube-apiserver and etcd (test/harness), the built bin/coredns, and DNS
// queries over UDP and TCP.
package kubernetes

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	istiometa "istio.io/api/meta/v1alpha1"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

const (
	dnsRes    = apinetworking.ServiceEntry_DNS
	noneRes   = apinetworking.ServiceEntry_NONE
	staticRes = apinetworking.ServiceEntry_STATIC
)

func TestKubernetesSource(t *testing.T) {
	cp := harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	a := &harness.API{T: t, CP: cp, Ctx: ctx}
	for _, ns := range []string{"shop", "db", "ext", "vm", "other", "bulk"} {
		a.Namespace(ns)
	}
	// Created before meshdns starts: served from the initial list.
	web := a.Service(clusterIPService("shop", "web"))

	// mesh serves the whole mesh; scoped is a client in namespace shop that
	// watches only shop and db.
	mesh := harness.StartCoreDNS(t, fmt.Sprintf("kubernetes %s {\n cluster main\n auto_allocate\n startup_timeout 30s\n}", cp.Kubeconfig))
	scoped := harness.StartCoreDNS(t, fmt.Sprintf("namespace shop\nkubernetes %s {\n namespaces shop db\n auto_allocate\n qps 20\n burst 40\n}", cp.Kubeconfig))
	on := func(t *testing.T) *harness.API { return &harness.API{T: t, CP: cp, Ctx: ctx} }

	t.Run("ClusterIP dual-stack", func(t *testing.T) {
		expectA(t, mesh.Addr, "web.shop.svc.cluster.local", web.Spec.ClusterIPs[0], web.Spec.ClusterIPs[1])
		expectA(t, scoped.Addr, "web.shop.svc.cluster.local", web.Spec.ClusterIPs[0], web.Spec.ClusterIPs[1])
		// The scoped client is in shop: its short name works too.
		expect(t, scoped.Addr, "web", dns.TypeA, web.Spec.ClusterIPs[0])
	})

	t.Run("headless and per-pod names", func(t *testing.T) {
		a := on(t)
		a.Service(headlessService("db", "mysql", false))
		a.Slice(endpointSlice("db", "mysql-x", "mysql", ep{"mysql-0", "10.1.0.1", true}, ep{"mysql-1", "10.1.0.2", false}))
		expectA(t, mesh.Addr, "mysql.db.svc.cluster.local", "10.1.0.1", "NODATA")
		expect(t, mesh.Addr, "mysql-0.mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1")
		expect(t, mesh.Addr, "mysql-1.mysql.db.svc.cluster.local", dns.TypeA, "NXDOMAIN")

		a.UpdateSlice(endpointSlice("db", "mysql-x", "mysql", ep{"mysql-0", "10.1.0.1", true}, ep{"mysql-1", "10.1.0.2", true}))
		expect(t, mesh.Addr, "mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1 10.1.0.2")
		expect(t, mesh.Addr, "mysql-1.mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.2")
		expect(t, scoped.Addr, "mysql-1.mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.2")

		// Without ready endpoints it has no records: NXDOMAIN (Kubernetes DNS
		// specification §2.4.1).
		a.UpdateSlice(endpointSlice("db", "mysql-x", "mysql"))
		expect(t, mesh.Addr, "mysql.db.svc.cluster.local", dns.TypeA, "NXDOMAIN")
	})

	t.Run("publishNotReadyAddresses", func(t *testing.T) {
		a := on(t)
		a.Service(headlessService("db", "cache", true))
		a.Slice(endpointSlice("db", "cache-x", "cache", ep{"", "10.1.1.1", false}, ep{"", "10.1.1.2", true}))
		expect(t, mesh.Addr, "cache.db.svc.cluster.local", dns.TypeA, "10.1.1.1 10.1.1.2")
		// Endpoints without a hostname get the dashed name.
		expect(t, mesh.Addr, "10-1-1-1.cache.db.svc.cluster.local", dns.TypeA, "10.1.1.1")
	})

	t.Run("ServiceEntry spec.addresses", func(t *testing.T) {
		a := on(t)
		a.ServiceEntry(serviceEntry("ext", "api", dnsRes, []string{"api.example.com"}, "192.0.2.10", "2001:db8::10"))
		expectA(t, mesh.Addr, "api.example.com", "192.0.2.10", "2001:db8::10")
		a.UpdateServiceEntry("ext", "api", func(se *networkingv1.ServiceEntry) { se.Spec.Addresses = []string{"192.0.2.11"} })
		expectA(t, mesh.Addr, "api.example.com", "192.0.2.11", "NODATA")
		a.DeleteServiceEntry("ext", "api")
		expect(t, mesh.Addr, "api.example.com", dns.TypeA, "NXDOMAIN")
	})

	t.Run("ServiceEntry status.addresses", func(t *testing.T) {
		a := on(t)
		a.ServiceEntry(serviceEntry("ext", "status", dnsRes, []string{"status.example.com"}))
		// With auto_allocate meshdns allocates first; istiod's status wins.
		a.SetServiceEntryStatus("ext", "status",
			&apinetworking.ServiceEntryAddress{Value: "240.240.9.9", Host: "status.example.com"},
			&apinetworking.ServiceEntryAddress{Value: "2001:2::9:9", Host: "status.example.com"})
		expectA(t, mesh.Addr, "status.example.com", "240.240.9.9", "2001:2::9:9")
	})

	t.Run("ServiceEntry NONE and STATIC endpoints", func(t *testing.T) {
		a := on(t)
		// NONE takes its endpoints from WorkloadEntries (the API refuses spec.endpoints).
		none := serviceEntry("ext", "none", noneRes, []string{"none.example.com"})
		none.Spec.WorkloadSelector = &apinetworking.WorkloadSelector{Labels: map[string]string{"app": "none"}}
		a.ServiceEntry(none)
		a.WorkloadEntry(&networkingv1.WorkloadEntry{ObjectMeta: om("ext", "none-1"),
			Spec: apinetworking.WorkloadEntry{Address: "10.3.0.1", Labels: map[string]string{"app": "none"}}})
		expect(t, mesh.Addr, "none.example.com", dns.TypeA, "10.3.0.1")
		static := serviceEntry("ext", "static", staticRes, []string{"static.example.com"})
		static.Labels = map[string]string{"networking.istio.io/enable-autoallocate-ip": "false"}
		static.Spec.Endpoints = []*apinetworking.WorkloadEntry{{Address: "10.3.1.1"}, {Address: "10.3.1.2"}}
		a.ServiceEntry(static)
		expect(t, mesh.Addr, "static.example.com", dns.TypeA, "10.3.1.1 10.3.1.2")
	})

	t.Run("ServiceEntry STATIC with WorkloadEntries", func(t *testing.T) {
		a := on(t)
		se := serviceEntry("vm", "legacy", staticRes, []string{"legacy.example.com"})
		se.Labels = map[string]string{"networking.istio.io/enable-autoallocate-ip": "false"}
		se.Spec.WorkloadSelector = &apinetworking.WorkloadSelector{Labels: map[string]string{"app": "legacy"}}
		a.ServiceEntry(se)
		a.WorkloadEntry(&networkingv1.WorkloadEntry{ObjectMeta: om("vm", "vm1"),
			Spec: apinetworking.WorkloadEntry{Address: "10.4.0.1", Labels: map[string]string{"app": "legacy"}}})
		a.WorkloadEntry(&networkingv1.WorkloadEntry{ObjectMeta: om("vm", "vm2"),
			Spec: apinetworking.WorkloadEntry{Address: "10.4.0.2", Labels: map[string]string{"app": "other"}}})
		expect(t, mesh.Addr, "legacy.example.com", dns.TypeA, "10.4.0.1")
		a.UpdateWorkloadEntryLabels("vm", "vm2", map[string]string{"app": "legacy"})
		expect(t, mesh.Addr, "legacy.example.com", dns.TypeA, "10.4.0.1 10.4.0.2")
	})

	// Istio's rule: a WorkloadEntry with health checks is served only while
	// its Healthy condition is True, one without them always.
	t.Run("WorkloadEntry health", func(t *testing.T) {
		a := on(t)
		se := serviceEntry("vm", "checked", staticRes, []string{"checked.example.com"})
		se.Labels = map[string]string{"networking.istio.io/enable-autoallocate-ip": "false"}
		se.Spec.WorkloadSelector = &apinetworking.WorkloadSelector{Labels: map[string]string{"app": "checked"}}
		a.ServiceEntry(se)
		// The probed one first: one watch delivers them in order, so once the
		// plain one answers, the probed one was seen and left out.
		probed := om("vm", "probed")
		probed.Annotations = map[string]string{"proxy.istio.io/health-checks-enabled": "true"}
		a.WorkloadEntry(&networkingv1.WorkloadEntry{ObjectMeta: probed,
			Spec: apinetworking.WorkloadEntry{Address: "10.4.1.2", Labels: map[string]string{"app": "checked"}}})
		a.WorkloadEntry(&networkingv1.WorkloadEntry{ObjectMeta: om("vm", "plain"),
			Spec: apinetworking.WorkloadEntry{Address: "10.4.1.1", Labels: map[string]string{"app": "checked"}}})
		expect(t, mesh.Addr, "checked.example.com", dns.TypeA, "10.4.1.1")
		setHealthy(a, "vm", "probed", "True")
		expect(t, mesh.Addr, "checked.example.com", dns.TypeA, "10.4.1.1 10.4.1.2")
		setHealthy(a, "vm", "probed", "False")
		expect(t, mesh.Addr, "checked.example.com", dns.TypeA, "10.4.1.1")
	})

	t.Run("ServiceEntries merged", func(t *testing.T) {
		a := on(t)
		a.ServiceEntry(serviceEntry("ext", "m1", dnsRes, []string{"merged.example.com"}, "192.0.2.21"))
		a.ServiceEntry(serviceEntry("ext", "m2", dnsRes, []string{"merged.example.com", "wild.example.com"}, "192.0.2.22"))
		expect(t, mesh.Addr, "merged.example.com", dns.TypeA, "192.0.2.21 192.0.2.22")
	})

	t.Run("ExternalName", func(t *testing.T) {
		a := on(t)
		a.Service(&corev1.Service{ObjectMeta: om("shop", "pay"), Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeExternalName, ExternalName: "pay.example.com"}})
		expect(t, mesh.Addr, "pay.shop.svc.cluster.local", dns.TypeCNAME, "CNAME pay.example.com.")
	})

	t.Run("auto_allocate", func(t *testing.T) {
		a := on(t)
		a.ServiceEntry(serviceEntry("shop", "auto", dnsRes, []string{"auto.example.com"}))
		optOut := serviceEntry("shop", "manual", dnsRes, []string{"manual.example.com"})
		optOut.Labels = map[string]string{"networking.istio.io/enable-autoallocate-ip": "false"}
		a.ServiceEntry(optOut)
		deadline := time.Now().Add(settle)
		for {
			v4 := answer(mesh.Addr, "auto.example.com", dns.TypeA, "udp")
			v6 := answer(mesh.Addr, "auto.example.com", dns.TypeAAAA, "tcp")
			if inPrefix(v4, "240.240.0.0/16") && inPrefix(v6, "2001:2::/48") {
				// Every node derives the same addresses.
				expectA(t, scoped.Addr, "auto.example.com", v4, v6)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("auto.example.com: A %q AAAA %q, want allocated addresses", v4, v6)
			}
			time.Sleep(50 * time.Millisecond)
		}
		expect(t, mesh.Addr, "manual.example.com", dns.TypeA, "NXDOMAIN")
	})

	t.Run("exportTo", func(t *testing.T) {
		a := on(t)
		private := clusterIPService("db", "private")
		private.Annotations = map[string]string{"networking.istio.io/exportTo": "."}
		priv := a.Service(private)
		shared := clusterIPService("db", "shared")
		shared.Annotations = map[string]string{"networking.istio.io/exportTo": "shop,other"}
		sh := a.Service(shared)
		sePrivate := serviceEntry("db", "se-private", dnsRes, []string{"private.example.com"}, "192.0.2.31")
		sePrivate.Spec.ExportTo = []string{"."}
		a.ServiceEntry(sePrivate)
		seShared := serviceEntry("db", "se-shared", dnsRes, []string{"shared.example.com"}, "192.0.2.32")
		seShared.Spec.ExportTo = []string{"shop"}
		a.ServiceEntry(seShared)

		// The later objects showing means the earlier ones were processed.
		expect(t, scoped.Addr, "shared.db.svc.cluster.local", dns.TypeA, sh.Spec.ClusterIPs[0])
		expect(t, scoped.Addr, "shared.example.com", dns.TypeA, "192.0.2.32")
		expect(t, scoped.Addr, "private.db.svc.cluster.local", dns.TypeA, "NXDOMAIN")
		expect(t, scoped.Addr, "private.example.com", dns.TypeA, "NXDOMAIN")
		// With no namespace configured the whole mesh is served.
		expect(t, mesh.Addr, "private.db.svc.cluster.local", dns.TypeA, priv.Spec.ClusterIPs[0])
		expect(t, mesh.Addr, "private.example.com", dns.TypeA, "192.0.2.31")
	})

	t.Run("namespaces filter", func(t *testing.T) {
		a := on(t)
		out := a.Service(clusterIPService("other", "outside"))
		expect(t, mesh.Addr, "outside.other.svc.cluster.local", dns.TypeA, out.Spec.ClusterIPs[0])
		expect(t, scoped.Addr, "outside.other.svc.cluster.local", dns.TypeA, "NXDOMAIN")
	})

	t.Run("bad object skipped", func(t *testing.T) {
		a := on(t)
		long := strings.Repeat(strings.Repeat("a", 60)+".", 5) + "example.com" // 316 characters
		a.ServiceEntry(serviceEntry("ext", "too-long", dnsRes, []string{"ok-before.example.com", long}, "192.0.2.41"))
		a.ServiceEntry(serviceEntry("ext", "good", dnsRes, []string{"good.example.com"}, "192.0.2.42"))
		expect(t, mesh.Addr, "good.example.com", dns.TypeA, "192.0.2.42")
		// The whole bad object is skipped, even its good hosts.
		expect(t, mesh.Addr, "ok-before.example.com", dns.TypeA, "NXDOMAIN")
		expect(t, mesh.Addr, "merged.example.com", dns.TypeA, "192.0.2.21 192.0.2.22")
		if !strings.Contains(mesh.Log(200), "ServiceEntry ext/too-long") {
			t.Errorf("no log line about the skipped ServiceEntry:\n%s", mesh.Log(40))
		}
	})

	t.Run("1000 services", func(t *testing.T) {
		const n = 1000
		begin := time.Now()
		ips := make([]string, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					s, err := cp.Client.CoreV1().Services("bulk").Create(ctx, &corev1.Service{
						ObjectMeta: om("bulk", fmt.Sprintf("svc-%d", i)),
						Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
					}, metav1.CreateOptions{})
					if err != nil {
						errs <- err
						return
					}
					ips[i] = s.Spec.ClusterIPs[0]
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("create services: %v", err)
		}
		created := time.Since(begin)
		for i := n - 1; i >= 0; i-- {
			expect(t, mesh.Addr, fmt.Sprintf("svc-%d.bulk.svc.cluster.local", i), dns.TypeA, ips[i])
		}
		t.Logf("%d services: created in %s, all answered after %s", n, created.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	})

	t.Run("API server outage", func(t *testing.T) {
		a := on(t)
		names := map[string]string{
			"web.shop.svc.cluster.local": web.Spec.ClusterIPs[0],
			"cache.db.svc.cluster.local": "10.1.1.1 10.1.1.2",
			"merged.example.com":         "192.0.2.21 192.0.2.22",
			"legacy.example.com":         "10.4.0.1 10.4.0.2",
		}
		up := `coredns_meshdns_source_up{source="kubernetes:main"}`
		if got := mesh.Metric(up); got != "1" {
			t.Errorf("%s = %q before the outage, want 1", up, got)
		}
		cp.StopAPIServer()
		t.Cleanup(func() {
			if t.Failed() {
				cp.StartAPIServer()
			}
		})
		// Answers go on, unchanged, while the API server is away.
		for range 10 {
			for name, want := range names {
				for _, network := range []string{"udp", "tcp"} {
					if got := answer(mesh.Addr, name, dns.TypeA, network); got != want {
						t.Fatalf("during the outage %s over %s = %q, want %q", name, network, got, want)
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		waitMetric(t, mesh, up, "0")
		cp.StartAPIServer()
		after := a.Service(clusterIPService("shop", "after"))
		a.ServiceEntry(serviceEntry("ext", "after", dnsRes, []string{"after.example.com"}, "192.0.2.51"))
		// Reflectors back off up to 30 s between attempts.
		deadline := time.Now().Add(90 * time.Second)
		for answer(mesh.Addr, "after.shop.svc.cluster.local", dns.TypeA, "udp") != after.Spec.ClusterIPs[0] {
			if time.Now().After(deadline) {
				t.Fatal("a service created after the restart is not served after 90s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		expect(t, mesh.Addr, "after.example.com", dns.TypeA, "192.0.2.51")
		expect(t, scoped.Addr, "after.shop.svc.cluster.local", dns.TypeA, after.Spec.ClusterIPs[0])
		for name, want := range names {
			expect(t, mesh.Addr, name, dns.TypeA, want)
		}
		waitMetric(t, mesh, up, "1")
	})

	t.Run("Service beats ServiceEntry", func(t *testing.T) {
		a := on(t)
		a.ServiceEntry(serviceEntry("shop", "web-se", dnsRes, []string{"web.shop.svc.cluster.local"}, "192.0.2.99"))
		a.ServiceEntry(serviceEntry("shop", "marker", dnsRes, []string{"marker.example.com"}, "192.0.2.98"))
		expect(t, mesh.Addr, "marker.example.com", dns.TypeA, "192.0.2.98")
		expect(t, mesh.Addr, "web.shop.svc.cluster.local", dns.TypeA, web.Spec.ClusterIPs[0])
		// Without the Service the ServiceEntry serves the host.
		a.DeleteService("shop", "web")
		expectA(t, mesh.Addr, "web.shop.svc.cluster.local", "192.0.2.99", "NODATA")
	})
}

// setHealthy writes a WorkloadEntry's Healthy condition, as istiod does
// from its agent's probes.
func setHealthy(a *harness.API, ns, name, status string) {
	a.T.Helper()
	c := a.CP.Istio.NetworkingV1().WorkloadEntries(ns)
	cur, err := c.Get(a.Ctx, name, metav1.GetOptions{})
	if err != nil {
		a.T.Fatalf("get workload entry %s/%s: %v", ns, name, err)
	}
	cur.Status.Conditions = []*istiometa.IstioCondition{{Type: "Healthy", Status: status}}
	if _, err := c.UpdateStatus(a.Ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.T.Fatalf("set workload entry %s/%s Healthy %s: %v", ns, name, status, err)
	}
}
