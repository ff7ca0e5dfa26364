package kubernetes

import (
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informer caches keep only what convert* reads, as CoreDNS's kubernetes
// plugin does: a cluster's objects are mostly fields DNS never looks at.

func slimMeta(m *metav1.ObjectMeta, labels, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, Labels: labels, Annotations: annotations,
	}
}

func slimService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	var ann map[string]string
	if v, ok := s.Annotations[exportToAnnotation]; ok {
		ann = map[string]string{exportToAnnotation: v}
	}
	out := &corev1.Service{
		ObjectMeta: slimMeta(&s.ObjectMeta, nil, ann),
		Spec: corev1.ServiceSpec{
			Type: s.Spec.Type, ClusterIP: s.Spec.ClusterIP, ClusterIPs: s.Spec.ClusterIPs,
			ExternalName: s.Spec.ExternalName, PublishNotReadyAddresses: s.Spec.PublishNotReadyAddresses,
		},
	}
	for _, p := range s.Spec.Ports {
		out.Spec.Ports = append(out.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port})
	}
	return out, nil
}

func slimEndpointSlice(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	var labels map[string]string
	if v, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		labels = map[string]string{discoveryv1.LabelServiceName: v}
	}
	out := &discoveryv1.EndpointSlice{ObjectMeta: slimMeta(&s.ObjectMeta, labels, nil), AddressType: s.AddressType}
	for _, ep := range s.Endpoints {
		out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{
			Addresses: ep.Addresses, Hostname: ep.Hostname,
			Conditions: discoveryv1.EndpointConditions{Ready: ep.Conditions.Ready},
		})
	}
	return out, nil
}

func slimServiceEntry(obj any) (any, error) {
	se, ok := obj.(*networkingv1.ServiceEntry)
	if !ok {
		return obj, nil
	}
	var labels map[string]string
	if v, ok := se.Labels[autoAllocateLabel]; ok {
		labels = map[string]string{autoAllocateLabel: v}
	}
	out := &networkingv1.ServiceEntry{
		ObjectMeta: slimMeta(&se.ObjectMeta, labels, nil),
		Spec: apinetworking.ServiceEntry{
			Hosts: se.Spec.Hosts, Addresses: se.Spec.Addresses, Ports: se.Spec.Ports,
			Resolution: se.Spec.Resolution, ExportTo: se.Spec.ExportTo, WorkloadSelector: se.Spec.WorkloadSelector,
		},
		Status: apinetworking.ServiceEntryStatus{Addresses: se.Status.Addresses},
	}
	for _, ep := range se.Spec.Endpoints {
		out.Spec.Endpoints = append(out.Spec.Endpoints, &apinetworking.WorkloadEntry{Address: ep.GetAddress()})
	}
	return out, nil
}

func slimWorkloadEntry(obj any) (any, error) {
	we, ok := obj.(*networkingv1.WorkloadEntry)
	if !ok {
		return obj, nil
	}
	return &networkingv1.WorkloadEntry{
		ObjectMeta: slimMeta(&we.ObjectMeta, we.Labels, nil),
		Spec:       apinetworking.WorkloadEntry{Address: we.Spec.Address, Labels: we.Spec.Labels},
	}, nil
}
