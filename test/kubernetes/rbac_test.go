package kubernetes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// The ClusterRole shipped in docs/ is enough for the source, and no more.
func TestRBAC(t *testing.T) {
	data, err := os.ReadFile("../../docs/kubernetes-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &role); err != nil || role.Kind != "ClusterRole" {
		t.Fatalf("docs/kubernetes-rbac.yaml is not one ClusterRole: kind %q, %v", role.Kind, err)
	}

	cp := harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a := &harness.API{T: t, CP: cp, Ctx: ctx}
	rbac := cp.Client.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterRole: %v", err)
	}
	token := cp.CreateToken(t, "meshdns", "meshdns", "")
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdns"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "meshdns", Name: "meshdns"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ClusterRoleBinding: %v", err)
	}

	a.Namespace("shop")
	web := a.Service(clusterIPService("shop", "web"))
	a.Service(headlessService("shop", "db", false))
	a.Slice(endpointSlice("shop", "db-x", "db", ep{"db-0", "10.1.0.1", true}))
	se := serviceEntry("shop", "vms", staticRes, []string{"vms.example.com"})
	se.Spec.WorkloadSelector = &apinetworking.WorkloadSelector{Labels: map[string]string{"app": "vm"}}
	se.Labels = map[string]string{"networking.istio.io/enable-autoallocate-ip": "false"}
	a.ServiceEntry(se)
	a.WorkloadEntry(&networkingv1.WorkloadEntry{ObjectMeta: om("shop", "vm1"),
		Spec: apinetworking.WorkloadEntry{Address: "10.4.0.1", Labels: map[string]string{"app": "vm"}}})

	cp.InstallServiceImportCRD(t)
	a.ServiceImport("shop", "web", "ClusterSetIP", "10.42.0.1")

	kubeconfig := writeKubeconfig(t, cp.RESTConfig.Host, token)
	srv := harness.StartCoreDNS(t, fmt.Sprintf("kubernetes %s {\n startup_timeout 30s\n}", kubeconfig))
	expect(t, srv.Addr, "web.shop.svc.cluster.local", dns.TypeA, web.Spec.ClusterIPs[0])
	expect(t, srv.Addr, "db-0.db.shop.svc.cluster.local", dns.TypeA, "10.1.0.1")
	expect(t, srv.Addr, "vms.example.com", dns.TypeA, "10.4.0.1")
	expect(t, srv.Addr, "web.shop.svc.clusterset.local", dns.TypeA, "10.42.0.1")

	// And nothing else: the same token cannot read secrets or pods, nor
	// change what it may read.
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Services("shop").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list services with the role: %v", err)
	}
	denied := map[string]func() error{
		"list secrets": func() error { _, err := sa.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{}); return err },
		"list pods":    func() error { _, err := sa.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{}); return err },
		"list endpoints": func() error {
			_, err := sa.CoreV1().Endpoints("shop").List(ctx, metav1.ListOptions{})
			return err
		},
		"create services": func() error {
			_, err := sa.CoreV1().Services("shop").Create(ctx, clusterIPService("shop", "evil"), metav1.CreateOptions{})
			return err
		},
		"delete services": func() error { return sa.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}) },
		"create configmaps": func() error {
			_, err := sa.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{ObjectMeta: om("shop", "x")}, metav1.CreateOptions{})
			return err
		},
	}
	for what, f := range denied {
		if err := f(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want forbidden", what, err)
		}
	}
}

func writeKubeconfig(t *testing.T, server, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["meshdns"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "meshdns"}
	cfg.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
