package kubernetes

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/meshdns/meshdns/plugin/table"
)

// Multi-Cluster Services (KEP-1645): a ServiceImport in a cluster is a
// service of the clusterset, served under clusterset.local as the
// Kubernetes Multicluster DNS specification (v1.0.0) says. Its endpoints are
// the EndpointSlices an MCS controller imports into the cluster, labelled
// with the ServiceImport's name and the cluster they come from.
const (
	clustersetZone   = "clusterset.local"
	clustersetSuffix = ".svc." + clustersetZone
	// mcsServiceLabel names the ServiceImport an EndpointSlice belongs to.
	mcsServiceLabel = "multicluster.kubernetes.io/service-name"
	// mcsClusterLabel names the cluster an imported EndpointSlice's
	// endpoints run in: the <clusterid> of their names.
	mcsClusterLabel = "multicluster.kubernetes.io/source-cluster"
	// mcsPoll is how often a cluster without the ServiceImport API is asked
	// again whether it has it now.
	mcsPoll = 30 * time.Second
)

var serviceImports = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"}

// serviceImport is what the table needs from a ServiceImport.
type serviceImport struct {
	apiObject
	ns, name, version string
	headless          bool
	ips               []netip.Addr // the ClusterSetIPs
	ports             []table.Port
}

func (si *serviceImport) GetNamespace() string       { return si.ns }
func (si *serviceImport) GetName() string            { return si.name }
func (si *serviceImport) GetResourceVersion() string { return si.version }

func importHost(name, ns string) string { return name + "." + ns + clustersetSuffix }

// serviceImportObject is the part of a ServiceImport meshdns reads.
type serviceImportObject struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Type  string   `json:"type"`
		IPs   []string `json:"ips"`
		Ports []struct {
			Name     string `json:"name"`
			Protocol string `json:"protocol"`
			Port     int32  `json:"port"`
		} `json:"ports"`
	} `json:"spec"`
}

func serviceImportTransform(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	var o serviceImportObject
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &o); err != nil {
		return skip(&metav1.ObjectMeta{Namespace: u.GetNamespace(), Name: u.GetName(), ResourceVersion: u.GetResourceVersion()},
			fmt.Errorf("%w: %v", table.ErrHost, err)), nil
	}
	out, err := convertServiceImport(&o)
	if err != nil {
		return skip(&o.ObjectMeta, err), nil
	}
	return out, nil
}

// convertServiceImport checks a ServiceImport: a type of ClusterSetIP or
// Headless, addresses, and ports as a Service's.
func convertServiceImport(o *serviceImportObject) (*serviceImport, error) {
	out := &serviceImport{ns: o.Namespace, name: o.Name, version: o.ResourceVersion}
	switch o.Spec.Type {
	case "ClusterSetIP":
	case "Headless":
		out.headless = true
	default:
		return nil, fmt.Errorf("%w: ServiceImport type %q (want ClusterSetIP or Headless)", table.ErrHost, o.Spec.Type)
	}
	for _, ip := range o.Spec.IPs {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.IsUnspecified() {
			return nil, fmt.Errorf("%w: ServiceImport ip %q", table.ErrAddress, ip)
		}
		out.ips = append(out.ips, a.Unmap())
	}
	var ps []table.Port
	for _, p := range o.Spec.Ports {
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("%w: ServiceImport port %q %d", table.ErrPort, p.Name, p.Port)
		}
		proto := table.TCP
		if p.Protocol != "" {
			var err error
			if proto, err = table.ParseProtocol(p.Protocol); err != nil {
				return nil, fmt.Errorf("%w: ServiceImport port %q: %v", table.ErrPort, p.Name, err)
			}
		}
		ps = append(ps, table.Port{Name: strings.ToLower(p.Name), Number: uint16(p.Port), Protocol: proto})
	}
	sortPorts(ps)
	if p := ports.intern(ps); p != nil {
		out.ports = *p
	}
	return out, nil
}

// mcsCluster returns the cluster of an EndpointSlice's endpoints when an
// MCS controller imported it ("" for a cluster's own slice), or an error
// for an imported slice that does not say its cluster as a DNS label.
func mcsCluster(labels map[string]string) (string, error) {
	if labels[mcsServiceLabel] == "" {
		return "", nil
	}
	c := strings.ToLower(labels[mcsClusterLabel])
	if c == "" || len(validation.IsDNS1123Label(c)) > 0 {
		return "", fmt.Errorf("%w: imported EndpointSlice: label %s=%q is not a DNS label", table.ErrEndpoint, mcsClusterLabel, c)
	}
	return c, nil
}

// importToEntry builds the entry of a ServiceImport: its ClusterSetIPs, or
// for a headless one the ready endpoints of its imported slices, each also
// under "<hostname>.<cluster>.<host>" (specification §2.3, §2.4).
func importToEntry(si *serviceImport, eps []*endpointSlice) table.Entry {
	e := table.Entry{Host: importHost(si.name, si.ns), Registry: table.Kubernetes, Addrs: si.ips, Ports: si.ports}
	if !si.headless {
		return e
	}
	return withEndpoints(e, eps, false)
}

// servesImports reports whether the API server has the ServiceImport API.
func servesImports(d discovery.DiscoveryInterface) (bool, error) {
	rs, err := d.ServerResourcesForGroupVersion(serviceImports.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(rs.APIResources, func(r metav1.APIResource) bool { return r.Name == serviceImports.Resource }), nil
}

// importWatches lists and watches ServiceImports in each namespace.
func importWatches(dc dynamic.Interface, namespaces []string, st *state, w *watcher) []*kindWatch {
	var out []*kindWatch
	for _, ns := range namespaces {
		r := dc.Resource(serviceImports).Namespace(ns)
		out = append(out, newWatch(listWatch(dc, func(*metav1.ListOptions) {}, r.List, r.Watch, w.failed("ServiceImports")), &unstructured.Unstructured{},
			serviceImportTransform, knownIn(st, ns, st.imports), w.serviceImport))
	}
	return out
}

// watchImportsOnceServed asks every mcsPoll whether the cluster serves
// ServiceImports now (the CRD installed after meshdns started) and then
// starts their watches.
func watchImportsOnceServed(ctx context.Context, d discovery.DiscoveryInterface, start func()) {
	t := time.NewTicker(mcsPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, _ := servesImports(d); ok {
				start()
				return
			}
		}
	}
}

func (w *watcher) serviceImport(key string, obj any) {
	w.state.setImport(key, converted[serviceImport](w, "ServiceImport", key, obj))
}
