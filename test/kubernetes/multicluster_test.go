package kubernetes

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// TestMulticluster runs meshdns on two real API servers, one kubernetes
// source each, as a client in either cluster sees the mesh; and the
// Multi-Cluster Services names of the cluster that has the ServiceImport API.
func TestMulticluster(t *testing.T) {
	c1, c2 := harness.Start(t), harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	a1, a2 := &harness.API{T: t, CP: c1, Ctx: ctx}, &harness.API{T: t, CP: c2, Ctx: ctx}
	for _, a := range []*harness.API{a1, a2} {
		a.Namespace("shop")
		a.Namespace("db")
	}
	c1.InstallServiceImportCRD(t)

	web1 := a1.Service(clusterIPService("shop", "web"))
	web2 := a2.Service(clusterIPService("shop", "web"))
	remote := a2.Service(clusterIPService("shop", "remote"))
	a1.Service(headlessService("db", "mysql", false))
	a1.Slice(endpointSlice("db", "mysql-a", "mysql", ep{"mysql-0", "10.1.0.1", true}, ep{"", "10.1.0.2", true}, ep{"mysql-9", "10.1.0.9", false}))
	a2.Service(headlessService("db", "mysql", false))
	a2.Slice(endpointSlice("db", "mysql-b", "mysql", ep{"mysql-0", "10.2.0.1", true}, ep{"mysql-1", "10.2.0.2", true}))

	// Each server is a client in one cluster; split has the clusters on two
	// networks.
	source := func(cp *harness.ControlPlane, cluster string, opts ...string) string {
		return fmt.Sprintf("kubernetes %s {\n cluster %s\n startup_timeout 30s\n %s\n}\n", cp.Kubeconfig, cluster, strings.Join(opts, "\n "))
	}
	inC1 := harness.StartCoreDNS(t, source(c1, "c1")+source(c2, "c2"))
	inC2 := harness.StartCoreDNS(t, source(c1, "c1")+source(c2, "c2", "client_cluster"))
	split := harness.StartCoreDNS(t, source(c1, "c1", "network n1")+source(c2, "c2", "network n2"))

	t.Run("a ClusterIP Service answers the client cluster's address, else the other's", func(t *testing.T) {
		expectA(t, inC1.Addr, "web.shop.svc.cluster.local", web1.Spec.ClusterIPs[0], web1.Spec.ClusterIPs[1])
		expectA(t, inC2.Addr, "web.shop.svc.cluster.local", web2.Spec.ClusterIPs[0], web2.Spec.ClusterIPs[1])
		for _, s := range []*harness.CoreDNS{inC1, inC2, split} {
			expectA(t, s.Addr, "remote.shop.svc.cluster.local", remote.Spec.ClusterIPs[0], remote.Spec.ClusterIPs[1])
		}
	})

	t.Run("a headless Service answers the ready endpoints of every cluster on the client's network", func(t *testing.T) {
		for _, s := range []*harness.CoreDNS{inC1, inC2} {
			expect(t, s.Addr, "mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1 10.1.0.2 10.2.0.1 10.2.0.2")
			expect(t, s.Addr, "mysql-1.mysql.db.svc.cluster.local", dns.TypeA, "10.2.0.2")
			expect(t, s.Addr, "mysql-9.mysql.db.svc.cluster.local", dns.TypeA, "NXDOMAIN")
		}
		// A hostname in both clusters is the client cluster's pod.
		expect(t, inC1.Addr, "mysql-0.mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1")
		expect(t, inC2.Addr, "mysql-0.mysql.db.svc.cluster.local", dns.TypeA, "10.2.0.1")
		expect(t, split.Addr, "mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1 10.1.0.2")
		expect(t, split.Addr, "mysql-1.mysql.db.svc.cluster.local", dns.TypeA, "NXDOMAIN")
	})

	t.Run("a Service that leaves the client's cluster answers the other cluster's address", func(t *testing.T) {
		a1.DeleteService("shop", "web")
		expectA(t, inC1.Addr, "web.shop.svc.cluster.local", web2.Spec.ClusterIPs[0], web2.Spec.ClusterIPs[1])
		a2.DeleteService("shop", "web")
		expect(t, inC1.Addr, "web.shop.svc.cluster.local", dns.TypeA, "NXDOMAIN")
	})

	t.Run("Multi-Cluster Services under clusterset.local", func(t *testing.T) {
		imported := func(name, service, cluster string, eps ...ep) *discoveryv1.EndpointSlice {
			s := endpointSlice("db", name, service, eps...)
			s.Labels = map[string]string{"multicluster.kubernetes.io/service-name": service, "multicluster.kubernetes.io/source-cluster": cluster}
			port, proto, pname := int32(8080), corev1.ProtocolTCP, "http"
			s.Ports = []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}}
			return s
		}
		a1.ServiceImport("shop", "web", "ClusterSetIP", "10.42.0.1")
		a1.ServiceImport("db", "mysql", "Headless")
		a1.ServiceImport("db", "empty", "Headless")
		a1.Slice(imported("mysql-east", "mysql", "east", ep{"mysql-0", "10.3.0.1", true}, ep{"", "10.3.0.2", true}, ep{"mysql-9", "10.3.0.9", false}))
		a1.Slice(imported("mysql-west", "mysql", "west", ep{"mysql-0", "10.4.0.1", true}))

		for _, s := range []*harness.CoreDNS{inC1, inC2} {
			// §2.3: ClusterSetIP, SRV to the service, PTR.
			expect(t, s.Addr, "web.shop.svc.clusterset.local", dns.TypeA, "10.42.0.1")
			expectRecords(t, s.Addr, "_http._tcp.web.shop.svc.clusterset.local", dns.TypeSRV, "0 100 80 web.shop.svc.clusterset.local.")
			expectRecords(t, s.Addr, "1.0.42.10.in-addr.arpa", dns.TypePTR, "web.shop.svc.clusterset.local.")
			expect(t, s.Addr, "east.web.shop.svc.clusterset.local", dns.TypeA, "NXDOMAIN") // §2.3.4
			// §2.4: every ready endpoint, each under <hostname>.<clusterid>.
			expect(t, s.Addr, "mysql.db.svc.clusterset.local", dns.TypeA, "10.3.0.1 10.3.0.2 10.4.0.1")
			expect(t, s.Addr, "mysql-0.east.mysql.db.svc.clusterset.local", dns.TypeA, "10.3.0.1")
			expect(t, s.Addr, "mysql-0.west.mysql.db.svc.clusterset.local", dns.TypeA, "10.4.0.1")
			expect(t, s.Addr, "10-3-0-2.east.mysql.db.svc.clusterset.local", dns.TypeA, "10.3.0.2")
			expect(t, s.Addr, "mysql-9.east.mysql.db.svc.clusterset.local", dns.TypeA, "NXDOMAIN")
			expect(t, s.Addr, "mysql-0.mysql.db.svc.clusterset.local", dns.TypeA, "NXDOMAIN")
			expect(t, s.Addr, "east.mysql.db.svc.clusterset.local", dns.TypeA, "NODATA") // §2.4.4: no records, but names below
			// Weights share 100 among the targets, as the kubernetes plugin's.
			expectRecords(t, s.Addr, "_http._tcp.mysql.db.svc.clusterset.local", dns.TypeSRV,
				"0 33 8080 10-3-0-2.east.mysql.db.svc.clusterset.local.",
				"0 33 8080 mysql-0.east.mysql.db.svc.clusterset.local.",
				"0 33 8080 mysql-0.west.mysql.db.svc.clusterset.local.")
			expect(t, s.Addr, "empty.db.svc.clusterset.local", dns.TypeA, "NXDOMAIN") // §2.4.1: no ready endpoint
			expectRecords(t, s.Addr, "dns-version.clusterset.local", dns.TypeTXT, `"1.0.0"`)
			// The cluster's own names are unchanged.
			expect(t, s.Addr, "mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1 10.1.0.2 10.2.0.1 10.2.0.2")
		}
		a1.DeleteServiceImport("shop", "web")
		expect(t, inC1.Addr, "web.shop.svc.clusterset.local", dns.TypeA, "NXDOMAIN")
	})

	t.Run("a cluster that goes away keeps its names until it is back", func(t *testing.T) {
		up := `coredns_meshdns_source_up{source="kubernetes:c2"}`
		waitMetric(t, inC1, up, "1")
		c2.StopAPIServer()
		waitMetric(t, inC1, up, "0")
		expectA(t, inC1.Addr, "remote.shop.svc.cluster.local", remote.Spec.ClusterIPs[0], remote.Spec.ClusterIPs[1])
		expect(t, inC1.Addr, "mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1 10.1.0.2 10.2.0.1 10.2.0.2")
		c2.StartAPIServer()
		waitMetric(t, inC1, up, "1")
		later := a2.Service(clusterIPService("shop", "later"))
		expectA(t, inC1.Addr, "later.shop.svc.cluster.local", later.Spec.ClusterIPs[0], later.Spec.ClusterIPs[1])
	})

	t.Run("a cluster down at start holds up only its own names", func(t *testing.T) {
		c2.StopAPIServer()
		// Ready once the other cluster's startup_timeout is over, as istiod
		// goes on without a remote cluster that does not sync in time.
		late := harness.StartCoreDNS(t, source(c1, "c1")+fmt.Sprintf("kubernetes %s {\n cluster c2\n startup_timeout 2s\n}\n", c2.Kubeconfig))
		expect(t, late.Addr, "mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1 10.1.0.2")
		expect(t, late.Addr, "remote.shop.svc.cluster.local", dns.TypeA, "NXDOMAIN")
		c2.StartAPIServer()
		expect(t, late.Addr, "mysql.db.svc.cluster.local", dns.TypeA, "10.1.0.1 10.1.0.2 10.2.0.1 10.2.0.2")
		expectA(t, late.Addr, "remote.shop.svc.cluster.local", remote.Spec.ClusterIPs[0], remote.Spec.ClusterIPs[1])
	})
}

// expectRecords polls until name's answer for qtype holds exactly want, each
// record's data as dig prints it, over UDP and TCP.
func expectRecords(t *testing.T, addr, name string, qtype uint16, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(settle)
	for {
		udp, tcp := records(addr, name, qtype, "udp"), records(addr, name, qtype, "tcp")
		if slices.Equal(udp, want) && slices.Equal(tcp, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: got %q over UDP and %q over TCP, want %q", name, dns.TypeToString[qtype], udp, tcp, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func records(addr, name string, qtype uint16, network string) []string {
	m, err := exchange(addr, dns.Fqdn(name), qtype, network)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	if m.Rcode != dns.RcodeSuccess {
		return []string{dns.RcodeToString[m.Rcode]}
	}
	var out []string
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
		}
	}
	slices.Sort(out)
	return out
}
