package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// MeshConfigMap is the minimal mesh config `istioctl x workload entry
// configure` needs in ConfigMap istio of istio-system: where VMs find
// istiod, and the trust domain.
const MeshConfigMap = "defaultConfig:\n  discoveryAddress: " + IstiodServerName + ":15012\ntrustDomain: cluster.local\n"

// WorkloadGroup is a group of VMs: namespace, name and the service account
// their identity is.
type WorkloadGroup struct {
	Namespace, Name, ServiceAccount string
	// Network is the VMs' network, if they are on another than the cluster.
	Network string
}

// yaml is the WorkloadGroup as Istio's VM guide writes it for istioctl.
func (wg WorkloadGroup) yaml() string {
	s := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: %s
  namespace: %s
spec:
  metadata:
    labels:
      app: %s
  template:
    serviceAccount: %s
`, wg.Name, wg.Namespace, wg.Name, wg.ServiceAccount)
	if wg.Network != "" {
		s += "    network: " + wg.Network + "\n"
	}
	return s
}

// IstioctlBinary returns the path of bin/istioctl (test/istio, `make
// istio-binaries`), failing when it is missing.
func IstioctlBinary(t TB) string {
	t.Helper()
	return requireIstioBinary(t, binaryDir(t), "istioctl")
}

// OnboardVM does what Istio's VM guide does on the cluster side for a VM
// of wg, against the real API server and istiod: ConfigMap istio in
// istio-system (MeshConfigMap), the namespace, the service account, the
// WorkloadGroup; it waits for istiod's istio-ca-root-cert ConfigMap in the
// namespace and runs the real `istioctl x workload entry configure -f
// wg.yaml -o DIR --clusterID Kubernetes --autoregister --ingressIP
// ingressIP`. It returns DIR: cluster.env, mesh.yaml, root-cert.pem,
// istio-token and hosts (ingressIP istiod.istio-system.svc).
func OnboardVM(t TB, cp *ControlPlane, wg WorkloadGroup, ingressIP string) string {
	t.Helper()
	istioctl := IstioctlBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	begin := time.Now()

	cms := cp.Client.CoreV1().ConfigMaps(IstiodNamespace)
	mesh := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio"}, Data: map[string]string{"mesh": MeshConfigMap}}
	if _, err := cms.Create(ctx, mesh, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = cms.Update(ctx, mesh, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("harness: update ConfigMap %s/istio: %v", IstiodNamespace, err)
		}
	} else if err != nil {
		t.Fatalf("harness: create ConfigMap %s/istio: %v", IstiodNamespace, err)
	}
	if err := cp.ensureNamespace(ctx, wg.Namespace); err != nil {
		t.Fatalf("harness: %v", err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: wg.ServiceAccount}}
	if _, err := cp.Client.CoreV1().ServiceAccounts(wg.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("harness: create service account %s/%s: %v", wg.Namespace, wg.ServiceAccount, err)
	}
	group := &networkingv1.WorkloadGroup{
		ObjectMeta: metav1.ObjectMeta{Name: wg.Name, Namespace: wg.Namespace},
		Spec: apinetworkingv1.WorkloadGroup{
			Metadata: &apinetworkingv1.WorkloadGroup_ObjectMeta{Labels: map[string]string{"app": wg.Name}},
			Template: &apinetworkingv1.WorkloadEntry{ServiceAccount: wg.ServiceAccount, Network: wg.Network},
		},
	}
	if _, err := cp.Istio.NetworkingV1().WorkloadGroups(wg.Namespace).Create(ctx, group, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("harness: create WorkloadGroup %s/%s: %v", wg.Namespace, wg.Name, err)
	}

	// istiod writes its root into every namespace; istioctl copies it from
	// the WorkloadGroup's.
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		cm, err := cp.Client.CoreV1().ConfigMaps(wg.Namespace).Get(ctx, IstioRootCertConfigMap, metav1.GetOptions{})
		return err == nil && cm.Data["root-cert.pem"] != "", nil
	})
	if err != nil {
		t.Fatalf("harness: no ConfigMap %s in namespace %s: is istiod running? %v", IstioRootCertConfigMap, wg.Namespace, err)
	}

	work := t.TempDir()
	wgFile := filepath.Join(work, "workloadgroup.yaml")
	if err := os.WriteFile(wgFile, []byte(wg.yaml()), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	dir := filepath.Join(work, "istio")
	cmd := exec.CommandContext(ctx, istioctl, "x", "workload", "entry", "configure",
		"-f", wgFile, "-o", dir, "--clusterID", "Kubernetes", "--autoregister",
		"--ingressIP", ingressIP, "--kubeconfig", cp.Kubeconfig)
	// istioctl keeps its defaults in $HOME/.istioctl: not this machine's.
	cmd.Env = append(os.Environ(), "HOME="+work)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("harness: %s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	for _, f := range []string{"cluster.env", "mesh.yaml", "root-cert.pem", "istio-token", "hosts"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("harness: istioctl wrote no %s: %v\n%s", f, err, out)
		}
	}
	t.Logf("harness: VM files of WorkloadGroup %s/%s in %s in %s", wg.Namespace, wg.Name, dir, time.Since(begin).Round(time.Millisecond))
	return dir
}
