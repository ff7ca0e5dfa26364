package main

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// candidate is one DNS server under test.
type candidate struct {
	key, title string
	k8s        bool // serves from the API server
	coredns    bool // a CoreDNS build, from a Corefile
	// binary is the CoreDNS build: bin/coredns (pprof on its pprof port)
	// unless set; the lean ones have no pprof plugin.
	binary   string
	servesSE bool // knows the ServiceEntry hosts
}

var candidates = []candidate{
	{key: "meshdns-file", title: "meshdns (file)", coredns: true, servesSE: true},
	{key: "meshdns-k8s", title: "meshdns (kubernetes)", k8s: true, coredns: true, servesSE: true},
	{key: "meshdns-lean", title: "bin/meshdns (file)", coredns: true, binary: "meshdns", servesSE: true},
	{key: "coredns-floor", title: "CoreDNS bind+hosts", coredns: true, binary: "coredns-floor", servesSE: true},
	{key: "hosts", title: "CoreDNS hosts", coredns: true, servesSE: true},
	{key: "file", title: "CoreDNS file", coredns: true, servesSE: true},
	{key: "kubernetes", title: "CoreDNS kubernetes", k8s: true, coredns: true},
	{key: "istio", title: "Istio agent proxy", servesSE: true},
	{key: "floor", title: "miekg/dns floor", servesSE: true},
}

// server is a running candidate.
type server struct {
	*proc
	addr, pprof string
	loadStart   string // load average when it started
}

// corefile is the Corefile of a CoreDNS candidate: the plugin block, then
// forward to the local upstream for everything it does not answer. No
// cache, no metrics, no logging, in every candidate.
func (b *bench) corefile(c candidate, d *dataset, port, pprofPort int) string {
	search := strings.Join(searchDomains, " ")
	var block string
	switch c.key {
	case "meshdns-file", "meshdns-k8s", "meshdns-lean":
		src := "file " + d.table + " reload 0"
		if c.key == "meshdns-k8s" {
			src = "kubernetes " + b.cp.Kubeconfig + " {\n\t\t\tcluster bench\n\t\t}"
		}
		block = fmt.Sprintf("meshdns {\n\t\t%s\n\t\tnamespace %s\n\t\tsearch %s\n\t\tauthoritative cluster.local\n\t\tfallthrough\n\t}",
			src, clientNS, search)
	case "hosts", "coredns-floor":
		block = fmt.Sprintf("hosts %s {\n\t\tttl 30\n\t\treload 0\n\t\tno_reverse\n\t\tfallthrough\n\t}", d.hosts)
	case "file":
		block = fmt.Sprintf("file %s cluster.local {\n\t\treload 0\n\t}\n\tfile %s example {\n\t\treload 0\n\t}",
			d.zones["cluster.local"], d.zones["example"])
	case "kubernetes":
		block = fmt.Sprintf("kubernetes cluster.local {\n\t\tkubeconfig %s\n\t\tttl 30\n\t}", b.cp.Kubeconfig)
	}
	switch c.binary {
	case "meshdns":
		return fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\t%s\n\tforward . %s\n}\n", port, block, b.upstream)
	case "coredns-floor": // no forward either: external names are SERVFAIL
		return fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\t%s\n}\n", port, block)
	}
	return fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\tpprof 127.0.0.1:%d\n\t%s\n\tforward . %s\n}\n",
		port, pprofPort, block, b.upstream)
}

// start runs candidate c for dataset d on serverCPU with GOMAXPROCS=1.
func (b *bench) start(c candidate, d *dataset) (*server, error) {
	port, pprofPort := harness.FreeDNSPort(b.r, "127.0.0.1"), harness.FreeDNSPort(b.r, "127.0.0.1")
	s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	dir := b.r.TempDir()
	var argv []string
	switch {
	case c.coredns:
		conf := filepath.Join(dir, "Corefile")
		if err := os.WriteFile(conf, []byte(b.corefile(c, d, port, pprofPort)), 0o644); err != nil {
			return nil, err
		}
		argv = pinned(serverCPU, filepath.Join(b.binDir, cmp.Or(c.binary, "coredns")), "-conf", conf)
		if c.binary == "" {
			s.pprof = fmt.Sprintf("127.0.0.1:%d", pprofPort)
		}
	case c.key == "istio":
		// Istio's proxy reads upstreams and search domains from
		// /etc/resolv.conf only: give it the pod's in a mount namespace.
		resolv := filepath.Join(dir, "resolv.conf")
		conf := fmt.Sprintf("nameserver 127.0.0.1\nsearch %s\noptions ndots:%d\n", strings.Join(searchDomains, " "), ndots)
		if err := os.WriteFile(resolv, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		argv = pinned(serverCPU, "unshare", "-m", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, resolv,
			b.istioBin, "-addr", s.addr, "-namespace", clientNS, "-domain", clientNS+".svc.cluster.local", "-table", d.table)
	case c.key == "floor":
		argv = pinned(serverCPU, b.self, "-serve", "floor", "-addr", s.addr, "-hosts", d.hosts)
	}
	var err error
	s.proc, err = startProc(b.r, c.key, argv, []string{"GOMAXPROCS=1"}, filepath.Join(dir, "log"))
	return s, err
}

// createObjects creates the Services and ServiceEntries of d that the API
// server does not have yet (d's objects are a superset of a smaller
// table's), with the table's addresses. The Services are seeded into etcd;
// the ServiceEntries (CRDs, no IP allocator) go through the API.
func (b *bench) createObjects(ctx context.Context, d *dataset) error {
	cs, is := b.cp.Client, b.cp.Istio
	if b.createdSvcs == 0 {
		for i := range namespaces {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%02d", i)}}
			if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		}
	}
	// Creating 100k Services through the API takes hours (see
	// harness.SeedServices). The harness's /12 range holds all of the
	// dataset's addresses (10.96.1.0 on).
	var svcs []*corev1.Service
	for _, h := range d.svcs[b.createdSvcs:] {
		svcs = append(svcs, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: h.name},
			Spec: corev1.ServiceSpec{
				Type:      corev1.ServiceTypeClusterIP,
				ClusterIP: h.ip.String(),
				Ports:     []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			},
		})
	}
	if err := b.cp.SeedServices(ctx, svcs); err != nil {
		return err
	}
	b.createdSvcs = len(d.svcs)
	err := harness.Parallel(len(d.ses)-b.createdSEs, 32, func(k int) error {
		j := b.createdSEs + k
		h := d.ses[j]
		res := apinetworking.ServiceEntry_DNS
		if h.wildcard {
			res = apinetworking.ServiceEntry_NONE
		}
		se := &networkingv1.ServiceEntry{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: seName(j)},
			Spec: apinetworking.ServiceEntry{
				Hosts:      []string{h.fqdn},
				Addresses:  []string{h.ip.String()},
				Location:   apinetworking.ServiceEntry_MESH_EXTERNAL,
				Resolution: res,
				Ports:      []*apinetworking.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}},
			},
		}
		_, err := is.NetworkingV1().ServiceEntries(h.ns).Create(ctx, se, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
		return err
	})
	if err != nil {
		return err
	}
	b.createdSEs = len(d.ses)
	return nil
}
