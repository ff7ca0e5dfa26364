package harness

import (
	"bytes"
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
)

// InstallServiceImportCRD applies the Multi-Cluster Services API's
// ServiceImport CRD (sigs.k8s.io/mcs-api, as the test module pins it) to
// cp and waits until it is established.
func (cp *ControlPlane) InstallServiceImportCRD(t TB) {
	t.Helper()
	crds, err := readCRDs("mcs-api ServiceImport CRD", bytes.NewReader(mcscrd.ServiceImportCRD))
	if err != nil {
		t.Fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := applyCRDs(ctx, cp.RESTConfig, crds); err != nil {
		t.Fatalf("%v", err)
	}
}

// serviceImportResource is the mcs-api ServiceImport resource meshdns reads.
var serviceImportResource = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"}

// ServiceImport creates a ServiceImport of type typ ("ClusterSetIP" or
// "Headless") with ips and one TCP port named http on 80.
func (a *API) ServiceImport(ns, name, typ string, ips ...string) {
	a.T.Helper()
	var list []any
	for _, ip := range ips {
		list = append(list, ip)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec": map[string]any{"type": typ, "ips": list,
			"ports": []any{map[string]any{"name": "http", "protocol": "TCP", "port": int64(80)}}},
	}}
	if _, err := a.serviceImports(ns).Create(a.Ctx, u, metav1.CreateOptions{}); err != nil {
		a.T.Fatalf("create ServiceImport %s/%s: %v", ns, name, err)
	}
}

// DeleteServiceImport deletes the ServiceImport ns/name.
func (a *API) DeleteServiceImport(ns, name string) {
	a.T.Helper()
	if err := a.serviceImports(ns).Delete(a.Ctx, name, metav1.DeleteOptions{}); err != nil {
		a.T.Fatalf("delete ServiceImport %s/%s: %v", ns, name, err)
	}
}

// serviceImports is the ServiceImports of namespace ns, through a dynamic
// client: the test module has no typed client for them.
func (a *API) serviceImports(ns string) dynamic.ResourceInterface {
	a.T.Helper()
	dc, err := dynamic.NewForConfig(a.CP.RESTConfig)
	if err != nil {
		a.T.Fatalf("dynamic client: %v", err)
	}
	return dc.Resource(serviceImportResource).Namespace(ns)
}
