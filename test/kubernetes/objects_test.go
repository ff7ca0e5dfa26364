package kubernetes

import (
	"context"
	"testing"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// api wraps the control plane's clients with helpers that fail the test.
type api struct {
	t   testing.TB
	cp  *harness.ControlPlane
	ctx context.Context
}

func (a *api) namespace(name string) {
	a.t.Helper()
	_, err := a.cp.Client.CoreV1().Namespaces().Create(a.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		a.t.Fatalf("create namespace %s: %v", name, err)
	}
}

func (a *api) service(s *corev1.Service) *corev1.Service {
	a.t.Helper()
	got, err := a.cp.Client.CoreV1().Services(s.Namespace).Create(a.ctx, s, metav1.CreateOptions{})
	if err != nil {
		a.t.Fatalf("create service %s/%s: %v", s.Namespace, s.Name, err)
	}
	return got
}

func (a *api) deleteService(ns, name string) {
	a.t.Helper()
	if err := a.cp.Client.CoreV1().Services(ns).Delete(a.ctx, name, metav1.DeleteOptions{}); err != nil {
		a.t.Fatalf("delete service %s/%s: %v", ns, name, err)
	}
}

func (a *api) slice(s *discoveryv1.EndpointSlice) {
	a.t.Helper()
	if _, err := a.cp.Client.DiscoveryV1().EndpointSlices(s.Namespace).Create(a.ctx, s, metav1.CreateOptions{}); err != nil {
		a.t.Fatalf("create endpoint slice %s/%s: %v", s.Namespace, s.Name, err)
	}
}

func (a *api) updateSlice(s *discoveryv1.EndpointSlice) {
	a.t.Helper()
	cur, err := a.cp.Client.DiscoveryV1().EndpointSlices(s.Namespace).Get(a.ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		a.t.Fatalf("get endpoint slice %s/%s: %v", s.Namespace, s.Name, err)
	}
	cur.Endpoints = s.Endpoints
	if _, err := a.cp.Client.DiscoveryV1().EndpointSlices(s.Namespace).Update(a.ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("update endpoint slice %s/%s: %v", s.Namespace, s.Name, err)
	}
}

func (a *api) serviceEntry(se *networkingv1.ServiceEntry) *networkingv1.ServiceEntry {
	a.t.Helper()
	got, err := a.cp.Istio.NetworkingV1().ServiceEntries(se.Namespace).Create(a.ctx, se, metav1.CreateOptions{})
	if err != nil {
		a.t.Fatalf("create service entry %s/%s: %v", se.Namespace, se.Name, err)
	}
	return got
}

func (a *api) updateServiceEntry(ns, name string, f func(*networkingv1.ServiceEntry)) {
	a.t.Helper()
	c := a.cp.Istio.NetworkingV1().ServiceEntries(ns)
	cur, err := c.Get(a.ctx, name, metav1.GetOptions{})
	if err != nil {
		a.t.Fatalf("get service entry %s/%s: %v", ns, name, err)
	}
	f(cur)
	if _, err := c.Update(a.ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("update service entry %s/%s: %v", ns, name, err)
	}
}

func (a *api) setServiceEntryStatus(ns, name string, addrs ...*apinetworking.ServiceEntryAddress) {
	a.t.Helper()
	c := a.cp.Istio.NetworkingV1().ServiceEntries(ns)
	cur, err := c.Get(a.ctx, name, metav1.GetOptions{})
	if err != nil {
		a.t.Fatalf("get service entry %s/%s: %v", ns, name, err)
	}
	cur.Status.Addresses = addrs
	if _, err := c.UpdateStatus(a.ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("update status of service entry %s/%s: %v", ns, name, err)
	}
}

func (a *api) deleteServiceEntry(ns, name string) {
	a.t.Helper()
	if err := a.cp.Istio.NetworkingV1().ServiceEntries(ns).Delete(a.ctx, name, metav1.DeleteOptions{}); err != nil {
		a.t.Fatalf("delete service entry %s/%s: %v", ns, name, err)
	}
}

func (a *api) workloadEntry(we *networkingv1.WorkloadEntry) {
	a.t.Helper()
	if _, err := a.cp.Istio.NetworkingV1().WorkloadEntries(we.Namespace).Create(a.ctx, we, metav1.CreateOptions{}); err != nil {
		a.t.Fatalf("create workload entry %s/%s: %v", we.Namespace, we.Name, err)
	}
}

func (a *api) updateWorkloadEntryLabels(ns, name string, labels map[string]string) {
	a.t.Helper()
	c := a.cp.Istio.NetworkingV1().WorkloadEntries(ns)
	cur, err := c.Get(a.ctx, name, metav1.GetOptions{})
	if err != nil {
		a.t.Fatalf("get workload entry %s/%s: %v", ns, name, err)
	}
	cur.Spec.Labels = labels
	if _, err := c.Update(a.ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("update workload entry %s/%s: %v", ns, name, err)
	}
}

// Object builders.

func om(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func clusterIPService(ns, name string) *corev1.Service {
	dual := corev1.IPFamilyPolicyRequireDualStack
	return &corev1.Service{ObjectMeta: om(ns, name), Spec: corev1.ServiceSpec{
		IPFamilyPolicy: &dual,
		Ports:          []corev1.ServicePort{{Name: "http", Port: 80}},
	}}
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

func serviceEntry(ns, name string, res apinetworking.ServiceEntry_Resolution, hosts []string, addrs ...string) *networkingv1.ServiceEntry {
	return &networkingv1.ServiceEntry{ObjectMeta: om(ns, name), Spec: apinetworking.ServiceEntry{
		Hosts: hosts, Addresses: addrs, Resolution: res,
		Ports: []*apinetworking.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}},
	}}
}
