package xds

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

const (
	dnsRes        = apinetworking.ServiceEntry_DNS
	noneRes       = apinetworking.ServiceEntry_NONE
	staticRes     = apinetworking.ServiceEntry_STATIC
	dynamicDNSRes = apinetworking.ServiceEntry_DYNAMIC_DNS
)

// api is the harness's API with this package's own helpers.
type api struct{ *harness.API }

// pod is a running, ready Pod with one IPv4 address.
type pod struct{ ns, name, hostname, subdomain, ip string }

// pod creates a Pod and sets its status as a kubelet would: running, ready,
// with its IP. (No kubelet or controller manager runs in the harness.)
func (a *api) pod(p pod) {
	a.T.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: om(p.ns, "default")}
	if _, err := a.CP.Client.CoreV1().ServiceAccounts(p.ns).Create(a.Ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		a.T.Fatalf("create service account %s/default: %v", p.ns, err)
	}
	c := a.CP.Client.CoreV1().Pods(p.ns)
	created, err := c.Create(a.Ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: map[string]string{"app": p.subdomain}},
		Spec: corev1.PodSpec{
			Hostname: p.hostname, Subdomain: p.subdomain, NodeName: "node-1",
			AutomountServiceAccountToken: ptr(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "app"}},
		}}, metav1.CreateOptions{})
	if err != nil {
		a.T.Fatalf("create pod %s/%s: %v", p.ns, p.name, err)
	}
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
	}
	if _, err := c.UpdateStatus(a.Ctx, created, metav1.UpdateOptions{}); err != nil {
		a.T.Fatalf("update status of pod %s/%s: %v", p.ns, p.name, err)
	}
}

// podSlice is the EndpointSlice Kubernetes writes for pods behind a
// headless service: hostname only when the pod's subdomain is the
// service's name and it has a hostname, and a reference to the pod.
func podSlice(service string, pods ...pod) *discoveryv1.EndpointSlice {
	s := endpointSlice(pods[0].ns, service+"-pods", service)
	for _, p := range pods {
		e := discoveryv1.Endpoint{Addresses: []string{p.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.ns, Name: p.name}}
		if p.hostname != "" && p.subdomain == service {
			e.Hostname = ptr(p.hostname)
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

// allocated waits until istiod has written the auto-allocated addresses of
// a ServiceEntry into its status and returns them by host: IPv4 from
// 240.240.0.0/16 first, then IPv6 from 2001:2::/48.
func (a *api) allocated(ns, name string) map[string][]string {
	a.T.Helper()
	deadline := time.Now().Add(settle)
	for {
		se, err := a.CP.Istio.NetworkingV1().ServiceEntries(ns).Get(a.Ctx, name, metav1.GetOptions{})
		if err != nil {
			a.T.Fatalf("get service entry %s/%s: %v", ns, name, err)
		}
		byHost := map[string][]string{}
		for _, addr := range se.Status.GetAddresses() {
			byHost[addr.GetHost()] = append(byHost[addr.GetHost()], addr.GetValue())
		}
		if len(byHost) == len(se.Spec.Hosts) {
			for h, vips := range byHost {
				if len(vips) != 2 || !inPrefix(vips[0], "240.240.0.0/16") || !inPrefix(vips[1], "2001:2::/48") {
					a.T.Fatalf("service entry %s/%s: status addresses of %s = %v, want one of 240.240.0.0/16 and one of 2001:2::/48", ns, name, h, vips)
				}
			}
			return byHost
		}
		if time.Now().After(deadline) {
			a.T.Fatalf("service entry %s/%s: status addresses %v after %s, want some for each of %v", ns, name, byHost, settle, se.Spec.Hosts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func inPrefix(addr, prefix string) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && netip.MustParsePrefix(prefix).Contains(a)
}

// createAll calls create(i) for i in [0, n) with 8 workers.
func createAll(t testing.TB, n int, create func(i int) error) {
	t.Helper()
	if err := harness.Parallel(n, 8, create); err != nil {
		t.Fatalf("create: %v", err)
	}
}

// Object builders.

func om(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func clusterIPService(ns, name string, families ...corev1.IPFamily) *corev1.Service {
	s := &corev1.Service{ObjectMeta: om(ns, name), Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80}},
	}}
	switch len(families) {
	case 0:
	case 1:
		single := corev1.IPFamilyPolicySingleStack
		s.Spec.IPFamilyPolicy, s.Spec.IPFamilies = &single, families
	default:
		dual := corev1.IPFamilyPolicyRequireDualStack
		s.Spec.IPFamilyPolicy, s.Spec.IPFamilies = &dual, families
	}
	return s
}

func dualStackService(ns, name string) *corev1.Service {
	return clusterIPService(ns, name, corev1.IPv4Protocol, corev1.IPv6Protocol)
}

func headlessService(ns, name string, notReady bool) *corev1.Service {
	return &corev1.Service{ObjectMeta: om(ns, name), Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: notReady,
		Ports: []corev1.ServicePort{{Name: "tcp", Port: 3306}},
	}}
}

type ep struct {
	hostname, ip string
	ready        bool
}

func endpointSlice(ns, name, service string, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("tcp"), Port: ptr[int32](3306)}},
	}
	for _, e := range eps {
		ready := e.ready
		d := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
		if e.hostname != "" {
			d.Hostname = &e.hostname
		}
		s.Endpoints = append(s.Endpoints, d)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func serviceEntry(ns, name string, res apinetworking.ServiceEntry_Resolution, hosts []string, addrs ...string) *networkingv1.ServiceEntry {
	return &networkingv1.ServiceEntry{ObjectMeta: om(ns, name), Spec: apinetworking.ServiceEntry{
		Hosts: hosts, Addresses: addrs, Resolution: res,
		Ports: []*apinetworking.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}},
	}}
}

func workloadEntry(ns, name, addr string, labels map[string]string) *networkingv1.WorkloadEntry {
	return &networkingv1.WorkloadEntry{ObjectMeta: om(ns, name),
		Spec: apinetworking.WorkloadEntry{Address: addr, Labels: labels}}
}

func svcHost(ns, name string) string { return fmt.Sprintf("%s.%s.svc.cluster.local", name, ns) }
