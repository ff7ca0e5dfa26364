package harness

import (
	"context"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// API wraps the control plane's clients with what the end-to-end tests do to
// Kubernetes and Istio objects; every method fails the test on an error.
type API struct {
	T   TB
	CP  *ControlPlane
	Ctx context.Context
}

func (a *API) Namespace(name string) {
	a.T.Helper()
	_, err := a.CP.Client.CoreV1().Namespaces().Create(a.Ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		a.T.Fatalf("create namespace %s: %v", name, err)
	}
}

func (a *API) Service(s *corev1.Service) *corev1.Service {
	a.T.Helper()
	got, err := a.CP.Client.CoreV1().Services(s.Namespace).Create(a.Ctx, s, metav1.CreateOptions{})
	if err != nil {
		a.T.Fatalf("create service %s/%s: %v", s.Namespace, s.Name, err)
	}
	return got
}

func (a *API) UpdateService(ns, name string, f func(*corev1.Service)) {
	a.T.Helper()
	c := a.CP.Client.CoreV1().Services(ns)
	cur, err := c.Get(a.Ctx, name, metav1.GetOptions{})
	if err != nil {
		a.T.Fatalf("get service %s/%s: %v", ns, name, err)
	}
	f(cur)
	if _, err := c.Update(a.Ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.T.Fatalf("update service %s/%s: %v", ns, name, err)
	}
}

func (a *API) DeleteService(ns, name string) {
	a.T.Helper()
	if err := a.CP.Client.CoreV1().Services(ns).Delete(a.Ctx, name, metav1.DeleteOptions{}); err != nil {
		a.T.Fatalf("delete service %s/%s: %v", ns, name, err)
	}
}

func (a *API) Slice(s *discoveryv1.EndpointSlice) {
	a.T.Helper()
	if _, err := a.CP.Client.DiscoveryV1().EndpointSlices(s.Namespace).Create(a.Ctx, s, metav1.CreateOptions{}); err != nil {
		a.T.Fatalf("create endpoint slice %s/%s: %v", s.Namespace, s.Name, err)
	}
}

func (a *API) UpdateSlice(s *discoveryv1.EndpointSlice) {
	a.T.Helper()
	cur, err := a.CP.Client.DiscoveryV1().EndpointSlices(s.Namespace).Get(a.Ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		a.T.Fatalf("get endpoint slice %s/%s: %v", s.Namespace, s.Name, err)
	}
	cur.Endpoints = s.Endpoints
	if _, err := a.CP.Client.DiscoveryV1().EndpointSlices(s.Namespace).Update(a.Ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.T.Fatalf("update endpoint slice %s/%s: %v", s.Namespace, s.Name, err)
	}
}

func (a *API) ServiceEntry(se *networkingv1.ServiceEntry) *networkingv1.ServiceEntry {
	a.T.Helper()
	got, err := a.CP.Istio.NetworkingV1().ServiceEntries(se.Namespace).Create(a.Ctx, se, metav1.CreateOptions{})
	if err != nil {
		a.T.Fatalf("create service entry %s/%s: %v", se.Namespace, se.Name, err)
	}
	return got
}

func (a *API) UpdateServiceEntry(ns, name string, f func(*networkingv1.ServiceEntry)) {
	a.T.Helper()
	c := a.CP.Istio.NetworkingV1().ServiceEntries(ns)
	cur, err := c.Get(a.Ctx, name, metav1.GetOptions{})
	if err != nil {
		a.T.Fatalf("get service entry %s/%s: %v", ns, name, err)
	}
	f(cur)
	if _, err := c.Update(a.Ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.T.Fatalf("update service entry %s/%s: %v", ns, name, err)
	}
}

func (a *API) SetServiceEntryStatus(ns, name string, addrs ...*apinetworking.ServiceEntryAddress) {
	a.T.Helper()
	c := a.CP.Istio.NetworkingV1().ServiceEntries(ns)
	cur, err := c.Get(a.Ctx, name, metav1.GetOptions{})
	if err != nil {
		a.T.Fatalf("get service entry %s/%s: %v", ns, name, err)
	}
	cur.Status.Addresses = addrs
	if _, err := c.UpdateStatus(a.Ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.T.Fatalf("update status of service entry %s/%s: %v", ns, name, err)
	}
}

func (a *API) DeleteServiceEntry(ns, name string) {
	a.T.Helper()
	if err := a.CP.Istio.NetworkingV1().ServiceEntries(ns).Delete(a.Ctx, name, metav1.DeleteOptions{}); err != nil {
		a.T.Fatalf("delete service entry %s/%s: %v", ns, name, err)
	}
}

func (a *API) WorkloadEntry(we *networkingv1.WorkloadEntry) {
	a.T.Helper()
	if _, err := a.CP.Istio.NetworkingV1().WorkloadEntries(we.Namespace).Create(a.Ctx, we, metav1.CreateOptions{}); err != nil {
		a.T.Fatalf("create workload entry %s/%s: %v", we.Namespace, we.Name, err)
	}
}

func (a *API) UpdateWorkloadEntryLabels(ns, name string, labels map[string]string) {
	a.T.Helper()
	c := a.CP.Istio.NetworkingV1().WorkloadEntries(ns)
	cur, err := c.Get(a.Ctx, name, metav1.GetOptions{})
	if err != nil {
		a.T.Fatalf("get workload entry %s/%s: %v", ns, name, err)
	}
	cur.Spec.Labels = labels
	if _, err := c.Update(a.Ctx, cur, metav1.UpdateOptions{}); err != nil {
		a.T.Fatalf("update workload entry %s/%s: %v", ns, name, err)
	}
}
