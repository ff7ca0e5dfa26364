package harness

import (
	"bytes"
	"context"
	"time"

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
