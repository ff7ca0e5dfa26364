package xds

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// The clusters of the multicluster test, in the kubernetes sources' Corefile
// order. istiod runs against the first, its config cluster (istiod's own
// cluster ID is the default, Kubernetes), and reads the second through a
// remote secret.
const (
	configCluster = "Kubernetes"
	remoteCluster = "c2"
)

// mcCluster is one cluster of the multicluster test and what was created in
// it.
type mcCluster struct {
	name string
	cp   *harness.ControlPlane
	a    *api
	// services are every Service as created (with its ClusterIPs),
	// headless and ExternalName ones included.
	services []*corev1.Service
	headless []headless
	ses      []*networkingv1.ServiceEntry
}

// service returns the Service ns/name of c, or nil.
func (c *mcCluster) service(ns, name string) *corev1.Service {
	for _, s := range c.services {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}

// mcHeadless is a headless Service of the multicluster test: its port, and
// its endpoints in each cluster that has it.
type mcHeadless struct {
	ns, name string
	port     corev1.ServicePort
	// pods: the ready endpoints with a hostname are Pods with spec.hostname
	// and spec.subdomain (a StatefulSet's), which istiod names from the Pod;
	// otherwise only the EndpointSlice names them, which istiod ignores.
	pods bool
	eps  map[string][]ep // by cluster
}

// build returns the Service, its EndpointSlice in cluster, and the Pods
// behind it.
func (h mcHeadless) build(cluster string) (headless, []pod) {
	svc := headlessService(h.ns, h.name, false)
	svc.Spec.Ports = []corev1.ServicePort{h.port}
	eps := h.eps[cluster]
	sl := endpointSlice(h.ns, h.name+"-a", h.name, eps...)
	// istiod leaves a headless host out unless the slice's port name is the
	// Service's.
	sl.Ports = []discoveryv1.EndpointPort{{Name: ptr(h.port.Name), Port: ptr(h.port.Port), Protocol: ptr(h.port.Protocol)}}
	var pods []pod
	for i, e := range eps {
		if h.pods && e.ready && e.hostname != "" {
			pods = append(pods, pod{h.ns, e.hostname, e.hostname, h.name, e.ip})
			sl.Endpoints[i].TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: h.ns, Name: e.hostname}
		}
	}
	return headless{svc: svc, slices: []*discoveryv1.EndpointSlice{sl}}, pods
}

// seOutsideConfigCluster is the one difference multicluster adds to the
// single-cluster ones.
var seOutsideConfigCluster = deliberate{
	what: "ServiceEntries of a cluster other than istiod's config cluster",
	match: func(m *mesh, d difference) bool {
		ses := m.serviceEntries[d.host]
		// The kubernetes sources serve the client's cluster's ServiceEntries
		// of a host if it has any, else the first other cluster's: ses[0].
		if len(ses) == 0 || m.seCluster[ses[0]] == configCluster || !answers(d.k8s, ses[0].Spec.Addresses, d.qtype) {
			return false
		}
		for _, se := range ses {
			if m.seCluster[se] == configCluster {
				return answers(d.xds, se.Spec.Addresses, d.qtype)
			}
		}
		return d.xds == "NXDOMAIN"
	},
	reason: "istiod reads ServiceEntries, like all Istio configuration, from its config cluster only, so over xds a host " +
		"that only a remote cluster's ServiceEntry defines does not exist, and a host that both define answers the config " +
		"cluster's addresses; the kubernetes sources serve the ServiceEntries of every cluster they watch, the client's " +
		"cluster's first.",
}

// multiclusterDifferences are the differences between the kubernetes
// sources of two clusters and istiod's table for a proxy in either.
var multiclusterDifferences = []deliberate{
	ipv6ForIPv4Node,
	externalNameService,
	endpointNamesWithoutPod,
	seOutsideConfigCluster,
}

// answers reports whether ans (an answer as harness.Answer writes it) is
// NOERROR with exactly the addresses of addrs that qtype asks for, after
// any CNAMEs: NODATA when addrs has none of its family.
func answers(ans string, addrs []string, qtype uint16) bool {
	var got, want []string
	for i, f := range strings.Fields(ans) {
		if _, rcode := dns.StringToRcode[f]; rcode && i == 0 {
			return false
		}
		if _, err := netip.ParseAddr(f); err == nil {
			got = append(got, f)
		}
	}
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() == (qtype == dns.TypeA) {
			want = append(want, a)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// TestMulticlusterDifferential compares, for a client in each of two
// clusters, meshdns fed by kubernetes sources watching both clusters with
// meshdns fed by istiod's NameTable for a proxy in that cluster, istiod
// reading the second cluster through a remote secret. Services only in one
// cluster, in both (ClusterIP, dual-stack, headless with endpoints in both,
// the same endpoint hostname in both), and ServiceEntries in either.
func TestMulticlusterDifferential(t *testing.T) {
	clusters := []*mcCluster{{name: configCluster}, {name: remoteCluster}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, c := range clusters {
		c.cp = harness.Start(t)
		c.a = &api{&harness.API{T: t, CP: c.cp, Ctx: ctx}}
		for _, ns := range []string{"app", "ns1", "ext"} {
			c.a.Namespace(ns)
		}
	}
	byName := map[string]*mcCluster{configCluster: clusters[0], remoteCluster: clusters[1]}
	istiod := harness.StartIstiod(t, clusters[0].cp)
	clusters[0].cp.RemoteSecret(t, clusters[1].cp, remoteCluster)

	both := []string{configCluster, remoteCluster}
	only := func(c string) []string { return []string{c} }
	begin := time.Now()

	// ClusterIP Services: in one cluster or both, every protocol, single
	// and dual-stack.
	protocols := []corev1.ServicePort{
		{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		{Name: "sctp", Port: 9899, Protocol: corev1.ProtocolSCTP},
	}
	placements := []struct {
		tag string
		in  []string
	}{{"k", only(configCluster)}, {"c2", only(remoteCluster)}, {"both", both}}
	for _, p := range placements {
		for i, port := range protocols {
			for _, dual := range []bool{false, true} {
				ns := []string{"app", "ns1"}[i%2]
				name := p.tag + "-" + port.Name
				if dual {
					name += "-dual"
				}
				for _, cl := range p.in {
					s := clusterIPService(ns, name)
					if dual {
						s = dualStackService(ns, name)
					}
					s.Spec.Ports = []corev1.ServicePort{port}
					c := byName[cl]
					c.services = append(c.services, c.a.Service(s))
				}
			}
		}
	}
	c2 := byName[remoteCluster]
	c2.services = append(c2.services, c2.a.Service(&corev1.Service{ObjectMeta: om("app", "extname"),
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "www.example.org"}}))

	// Headless Services with EndpointSlices: in both clusters, with the same
	// hostname in both; in one only.
	tcp, udp, sctp := protocols[0], protocols[1], protocols[2]
	tcp.Name, tcp.Port = "tcp", 3306
	headlessDefs := []mcHeadless{
		{ns: "app", name: "hl-both", port: tcp, pods: true, eps: map[string][]ep{
			configCluster: {{"pod-0", "10.20.0.1", true}, {"pod-1", "10.20.0.2", true}, {"", "10.20.0.3", true}, {"nr-0", "10.20.0.4", false}},
			remoteCluster: {{"pod-0", "10.21.0.1", true}, {"pod-2", "10.21.0.2", true}, {"", "10.21.0.3", true}, {"nr-1", "10.21.0.4", false}},
		}},
		{ns: "ns1", name: "hl-udp", port: udp, eps: map[string][]ep{
			configCluster: {{"db-0", "10.20.1.1", true}, {"", "10.20.1.2", false}},
			remoteCluster: {{"db-0", "10.21.1.1", true}, {"", "10.21.1.2", true}},
		}},
		{ns: "ns1", name: "hl-c2", port: sctp, pods: true, eps: map[string][]ep{
			remoteCluster: {{"c2db-0", "10.21.2.1", true}, {"", "10.21.2.2", true}, {"", "10.21.2.3", false}},
		}},
		{ns: "app", name: "hl-k", port: tcp, pods: true, eps: map[string][]ep{
			configCluster: {{"k-0", "10.20.2.1", true}},
		}},
	}
	for _, def := range headlessDefs {
		for _, c := range clusters {
			if _, ok := def.eps[c.name]; !ok {
				continue
			}
			h, pods := def.build(c.name)
			// Pods before their slice: istiod holds back an endpoint whose
			// Pod it has not seen.
			for _, p := range pods {
				c.a.pod(p)
			}
			c.services = append(c.services, c.a.Service(h.svc))
			for _, sl := range h.slices {
				c.a.Slice(sl)
			}
			c.headless = append(c.headless, h)
		}
	}

	// ServiceEntries: istiod reads only its config cluster's.
	seDefs := []struct {
		cluster string
		se      *networkingv1.ServiceEntry
	}{
		{configCluster, serviceEntry("ext", "se-k", dnsRes, []string{"se-k.example.com"}, "192.0.2.10")},
		{configCluster, serviceEntry("ext", "se-both", dnsRes, []string{"se-both.example.com"}, "192.0.2.30")},
		{configCluster, serviceEntry("ext", "se-auto", dnsRes, []string{"se-auto.example.com"})},
		{remoteCluster, serviceEntry("ext", "se-c2", staticRes, []string{"se-c2.example.com"}, "192.0.2.20")},
		{remoteCluster, serviceEntry("ext", "se-both", dnsRes, []string{"se-both.example.com"}, "192.0.2.31")},
	}
	for _, d := range seDefs {
		c := byName[d.cluster]
		c.ses = append(c.ses, c.a.ServiceEntry(d.se))
	}
	// The kubernetes sources read istiod's allocation from the status:
	// istiod must have written it before they start.
	byName[configCluster].a.allocated("ext", "se-auto")

	// Markers, created last in each cluster: when a server answers them,
	// it has seen everything before in that cluster (istiod and the
	// kubernetes sources keep each cluster's order of events).
	var markers []marker
	for _, c := range clusters {
		s := c.a.Service(clusterIPService("app", "zz-marker-"+strings.ToLower(c.name)))
		c.services = append(c.services, s)
		markers = append(markers, marker{svcHost("app", s.Name), s.Spec.ClusterIPs[0], true})
		ip := "192.0.2.99"
		if c.name != configCluster {
			ip = "192.0.2.98"
		}
		se := serviceEntry("ext", "zz-marker", dnsRes, []string{"zz-marker-" + strings.ToLower(c.name) + ".example.com"}, ip)
		c.ses = append(c.ses, c.a.ServiceEntry(se))
		markers = append(markers, marker{se.Spec.Hosts[0], ip, c.name == configCluster})
	}
	t.Logf("created the objects of both clusters in %s", time.Since(begin).Round(time.Millisecond))

	// Services in both clusters must have different ClusterIPs, or the test
	// cannot tell whose a server answers.
	for _, s := range byName[configCluster].services {
		other := c2.service(s.Namespace, s.Name)
		if other == nil || s.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		for _, ip := range s.Spec.ClusterIPs {
			if slices.Contains(other.Spec.ClusterIPs, ip) {
				t.Fatalf("%s/%s has ClusterIP %s in both clusters", s.Namespace, s.Name, ip)
			}
		}
	}

	seen := map[string][]difference{}
	compared := 0
	for _, home := range clusters {
		t.Run(home.name, func(t *testing.T) {
			for what, ds := range multiclusterRun(t, istiod, clusters, home, markers) {
				seen[what] = append(seen[what], ds...)
			}
			compared++
		})
	}
	// A deliberate difference may show for one client cluster only.
	if compared == len(clusters) {
		checkSeen(t, multiclusterDifferences, seen)
	}
}

// marker is a host created last in its cluster, and its A answer.
type marker struct {
	host, ip string
	istiod   bool // whether istiod serves it
}

// multiclusterRun compares the two servers for a client in cluster home and
// returns the deliberate differences seen.
func multiclusterRun(t *testing.T, istiod *harness.Istiod, clusters []*mcCluster, home *mcCluster, markers []marker) map[string][]difference {
	node := harness.SidecarNode(client.ip, client.name, client.namespace, map[string]string{"CLUSTER_ID": home.name})
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	table, err := harness.FetchNameTable(ctx, istiod.PlaintextAddr, node, func(nt harness.NameTable) bool {
		for _, mk := range markers {
			if _, ok := nt[mk.host]; mk.istiod && !ok {
				return false
			}
		}
		return true
	})
	if err != nil {
		// Say so if it is the remote cluster that is missing.
		checkRemoteRead(t, table, clusters)
		t.Fatalf("NDS for %s: %v; last table (%d hosts):\n%s", node.GetId(), err, len(table), table)
	}
	t.Logf("istiod's table for %s (CLUSTER_ID %s) has %d hosts", node.GetId(), home.name, len(table))
	checkRemoteRead(t, table, clusters)
	logIstiodFacts(t, table, clusters, home)

	// The client's cluster first: the rest of the mesh is built the way the
	// kubernetes sources pick, the client's cluster's object if it has one.
	m := newMesh()
	m.table = table
	m.negatives = []string{
		svcHost("app", "nope"), svcHost("ns1", "nope"), // no such Service in any cluster
		svcHost("nope", "both-http"),          // a Service's name, in a namespace that exists in no cluster
		svcHost("ns1", "c2-http"),             // c2's Service, in another namespace of c2
		"pod-9." + svcHost("app", "hl-both"),  // a hostname no cluster has
		"c2db-0." + svcHost("app", "hl-both"), // another headless Service's hostname
		"nope.example.com",
	}
	order := []*mcCluster{home}
	for _, c := range clusters {
		if c != home {
			order = append(order, c)
		}
	}
	for _, c := range order {
		for _, s := range c.services {
			m.addService(s)
		}
		for _, h := range c.headless {
			m.addHeadless(h)
		}
		for _, se := range c.ses {
			m.addServiceEntry(se, c.name)
		}
	}

	var sources strings.Builder
	fmt.Fprintf(&sources, "namespace %s\n", client.namespace)
	for _, c := range clusters {
		fmt.Fprintf(&sources, "kubernetes %s {\n cluster %s\n startup_timeout 30s\n", c.cp.Kubeconfig, c.name)
		if c == home {
			sources.WriteString(" client_cluster\n")
		}
		sources.WriteString("}\n")
	}
	k8s := harness.StartCoreDNS(t, sources.String())
	xds := harness.StartCoreDNS(t, fmt.Sprintf("namespace %s\nxds %s {\n insecure\n node_ip %s\n workload %s\n cluster_id %s\n}",
		client.namespace, istiod.PlaintextAddr, client.ip, client.name, home.name))
	for _, mk := range markers {
		expect(t, k8s.Addr, mk.host, dns.TypeA, mk.ip)
		if mk.istiod {
			expect(t, xds.Addr, mk.host, dns.TypeA, mk.ip)
		}
	}

	c := differential(t, m, multiclusterDifferences, k8s.Addr, xds.Addr)
	checkTableAnswered(t, table, c.results)
	writeDiffs(t, "."+home.name, table, c.diffs)
	return c.seen
}

// checkRemoteRead stops the test unless istiod's table has what only the
// remote cluster has: otherwise istiod did not take the remote secret, and
// the comparison would be of one cluster.
func checkRemoteRead(t *testing.T, table harness.NameTable, clusters []*mcCluster) {
	t.Helper()
	config, remote := clusters[0], clusters[1]
	for _, s := range remote.services {
		if config.service(s.Namespace, s.Name) != nil || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		h := svcHost(s.Namespace, s.Name)
		if _, ok := table[h]; !ok {
			t.Fatalf("istiod's table has no %s, which only cluster %s has: istiod did not read it through the remote secret", h, remote.name)
		}
	}
}

// logIstiodFacts logs what istiod answers for the hosts both clusters have,
// for whoever reads the test's output to see istiod's multicluster rules.
func logIstiodFacts(t *testing.T, table harness.NameTable, clusters []*mcCluster, home *mcCluster) {
	t.Helper()
	whose := func(ip string) string {
		var in []string
		for _, c := range clusters {
			for _, s := range c.services {
				if slices.Contains(s.Spec.ClusterIPs, ip) {
					in = append(in, c.name)
				}
			}
			for _, h := range c.headless {
				for _, sl := range h.slices {
					for _, e := range sl.Endpoints {
						if slices.Contains(e.Addresses, ip) {
							in = append(in, c.name)
						}
					}
				}
			}
		}
		return ip + "(" + strings.Join(in, ",") + ")"
	}
	for _, h := range []string{svcHost("app", "both-http"), svcHost("ns1", "both-dns-dual"), svcHost("app", "c2-http"),
		svcHost("ns1", "k-dns-dual"), svcHost("app", "hl-both"), "pod-0." + svcHost("app", "hl-both"),
		svcHost("ns1", "hl-udp"), svcHost("ns1", "hl-c2"), "c2db-0." + svcHost("ns1", "hl-c2"), "k-0." + svcHost("app", "hl-k")} {
		var ips []string
		for _, ip := range table[h].IPs {
			ips = append(ips, whose(ip))
		}
		t.Logf("istiod, proxy in %s: %s: %v", home.name, h, ips)
	}
}
