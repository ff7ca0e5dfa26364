package kubernetes

import (
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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
