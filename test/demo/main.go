// Command demo runs meshdns's kubernetes source against a local control
// plane: a real etcd and kube-apiserver (test/harness), a sample mesh, and
// bin/coredns on 127.0.0.1:1053. It prints dig commands for each kind of
// answer, with what they return now, and tears everything down on Ctrl-C.
//
// Run it with `make demo` from the repository root.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

const port = 1053

func main() {
	r := &harness.Runner{Prefix: "meshdns-demo-"}
	defer r.Teardown()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log.Print("starting etcd and kube-apiserver...")
	cp := harness.Start(r)
	if err := applyMesh(ctx, cp); err != nil {
		r.Fatalf("sample mesh: %v", err)
	}
	body := fmt.Sprintf("kubernetes %s {\n cluster demo\n auto_allocate\n}", cp.Kubeconfig)
	srv := harness.StartCoreDNSAt(r, port, body)

	fmt.Printf("\nmeshdns serves the sample mesh on %s (kubeconfig %s).\n\n", srv.Addr, cp.Kubeconfig)
	for _, q := range queries {
		fmt.Printf("# %s\ndig @127.0.0.1 -p %d %s %s +short\n", q.what, port, q.name, dns.TypeToString[q.qtype])
		for _, line := range ask(srv.Addr, q.name, q.qtype) {
			fmt.Printf("    %s\n", line)
		}
		fmt.Println()
	}
	fmt.Printf("Try kubectl --kubeconfig %s apply/delete and dig again. Ctrl-C stops everything.\n", cp.Kubeconfig)
	<-ctx.Done()
	log.Print("tearing down...")
}

var queries = []struct {
	what  string
	name  string
	qtype uint16
}{
	{"a ClusterIP service (dual-stack): A", "reviews.bookinfo.svc.cluster.local", dns.TypeA},
	{"the same service: AAAA", "reviews.bookinfo.svc.cluster.local", dns.TypeAAAA},
	{"a headless StatefulSet-style service: its ready pods", "mysql.db.svc.cluster.local", dns.TypeA},
	{"one pod of it, by hostname", "mysql-0.mysql.db.svc.cluster.local", dns.TypeA},
	{"its SRV records, one per pod", "_mysql._tcp.mysql.db.svc.cluster.local", dns.TypeSRV},
	{"ServiceEntry with spec.addresses", "api.payments.example", dns.TypeA},
	{"ServiceEntry with resolution DNS and no address: allocated by meshdns", "httpbin.org", dns.TypeA},
	{"the same: its allocated IPv6 address", "httpbin.org", dns.TypeAAAA},
	{"ServiceEntry STATIC: the WorkloadEntries it selects", "legacy.vms.example", dns.TypeA},
	{"ServiceEntry NONE: its endpoints", "kafka.external.example", dns.TypeA},
	{"wildcard ServiceEntry host: any name below it", "storage.googleapis.com", dns.TypeA},
	{"ExternalName service: a CNAME, followed inside the mesh", "payments.bookinfo.svc.cluster.local", dns.TypeA},
	{"unknown name: NXDOMAIN", "nothing.bookinfo.svc.cluster.local", dns.TypeA},
}

func ask(addr, name string, qtype uint16) []string {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	resp, err := dns.Exchange(m, addr)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	if resp.Rcode != dns.RcodeSuccess {
		return []string{dns.RcodeToString[resp.Rcode]}
	}
	var out []string
	for _, rr := range resp.Answer {
		out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	slices.Sort(out)
	return out
}

// applyMesh creates a bookinfo-style sample mesh. There is no controller
// manager, so the EndpointSlices are written here.
func applyMesh(ctx context.Context, cp *harness.ControlPlane) error {
	core, istio := cp.Client.CoreV1(), cp.Istio.NetworkingV1()
	for _, ns := range []string{"bookinfo", "db", "external", "vms"} {
		if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	dual := corev1.IPFamilyPolicyPreferDualStack
	for _, name := range []string{"productpage", "reviews", "ratings", "details"} {
		_, err := core.Services("bookinfo").Create(ctx, &corev1.Service{ObjectMeta: om("bookinfo", name), Spec: corev1.ServiceSpec{
			IPFamilyPolicy: &dual, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}},
		}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
	}
	_, err := core.Services("bookinfo").Create(ctx, &corev1.Service{ObjectMeta: om("bookinfo", "payments"), Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeExternalName, ExternalName: "api.payments.example",
	}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	_, err = core.Services("db").Create(ctx, &corev1.Service{ObjectMeta: om("db", "mysql"), Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "mysql", Port: 3306}},
	}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "db", Name: "mysql-1a2b3", Labels: map[string]string{discoveryv1.LabelServiceName: "mysql"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, ready := range []bool{true, true, false} {
		host := fmt.Sprintf("mysql-%d", i)
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{fmt.Sprintf("10.1.0.%d", 10+i)}, Hostname: &host,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	if _, err := cp.Client.DiscoveryV1().EndpointSlices("db").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return err
	}

	noAlloc := map[string]string{"networking.istio.io/enable-autoallocate-ip": "false"}
	ses := []*networkingv1.ServiceEntry{
		{ObjectMeta: om("external", "payments"), Spec: apinetworking.ServiceEntry{
			Hosts: []string{"api.payments.example"}, Addresses: []string{"192.0.2.10"},
			Resolution: apinetworking.ServiceEntry_DNS, Ports: https}},
		{ObjectMeta: om("external", "httpbin"), Spec: apinetworking.ServiceEntry{
			Hosts: []string{"httpbin.org"}, Resolution: apinetworking.ServiceEntry_DNS, Ports: https}},
		{ObjectMeta: om("external", "googleapis"), Spec: apinetworking.ServiceEntry{
			Hosts: []string{"*.googleapis.com"}, Resolution: apinetworking.ServiceEntry_DYNAMIC_DNS, Ports: https}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "legacy", Labels: noAlloc}, Spec: apinetworking.ServiceEntry{
			Hosts: []string{"legacy.vms.example"}, Resolution: apinetworking.ServiceEntry_STATIC, Ports: https,
			WorkloadSelector: &apinetworking.WorkloadSelector{Labels: map[string]string{"app": "legacy"}}}},
		{ObjectMeta: om("external", "kafka"), Spec: apinetworking.ServiceEntry{
			Hosts: []string{"kafka.external.example"}, Resolution: apinetworking.ServiceEntry_NONE,
			Ports:            []*apinetworking.ServicePort{{Number: 9092, Name: "kafka", Protocol: "TCP"}},
			WorkloadSelector: &apinetworking.WorkloadSelector{Labels: map[string]string{"app": "kafka"}}}},
	}
	for _, se := range ses {
		if _, err := istio.ServiceEntries(se.Namespace).Create(ctx, se, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	wes := []*networkingv1.WorkloadEntry{
		{ObjectMeta: om("vms", "vm-1"), Spec: apinetworking.WorkloadEntry{Address: "10.20.0.1", Labels: map[string]string{"app": "legacy"}}},
		{ObjectMeta: om("vms", "vm-2"), Spec: apinetworking.WorkloadEntry{Address: "10.20.0.2", Labels: map[string]string{"app": "legacy"}}},
		{ObjectMeta: om("external", "broker-1"), Spec: apinetworking.WorkloadEntry{Address: "10.30.0.1", Labels: map[string]string{"app": "kafka"}}},
	}
	for _, we := range wes {
		if _, err := istio.WorkloadEntries(we.Namespace).Create(ctx, we, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

var https = []*apinetworking.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}}

func om(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func init() { log.SetFlags(log.Ltime) }
