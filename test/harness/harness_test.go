package harness

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestControlPlane(t *testing.T) {
	cp := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The kubeconfig file works on its own, and Start created istio-system.
	config, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	if !strings.HasPrefix(config.Host, "https://127.0.0.1:") {
		t.Errorf("kubeconfig server = %q, want https://127.0.0.1:PORT", config.Host)
	}
	fromFile, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatalf("client from kubeconfig: %v", err)
	}
	if _, err := fromFile.CoreV1().Namespaces().Get(ctx, "istio-system", metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace istio-system with the kubeconfig: %v", err)
	}

	// The API server allocates ClusterIPs itself, from both families.
	dualStack := corev1.IPFamilyPolicyRequireDualStack
	svc, err := cp.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			IPFamilyPolicy: &dualStack,
			Ports:          []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	cidrs := strings.Split(ServiceCIDRs, ",")
	if len(svc.Spec.ClusterIPs) != len(cidrs) {
		t.Fatalf("service ClusterIPs = %v, want one from each of %v", svc.Spec.ClusterIPs, cidrs)
	}
	for i, ip := range svc.Spec.ClusterIPs {
		addr, err := netip.ParseAddr(ip)
		if err != nil || !netip.MustParsePrefix(cidrs[i]).Contains(addr) {
			t.Errorf("service ClusterIP %q is not in %s", ip, cidrs[i])
		}
	}

	// Istio CRDs are installed and served through the Istio clientset.
	entries := cp.Istio.NetworkingV1().ServiceEntries("default")
	_, err = entries.Create(ctx, &networkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "external-api"},
		Spec: apinetworkingv1.ServiceEntry{
			Hosts:      []string{"api.example.com"},
			Ports:      []*apinetworkingv1.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}},
			Location:   apinetworkingv1.ServiceEntry_MESH_EXTERNAL,
			Resolution: apinetworkingv1.ServiceEntry_DNS,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service entry: %v", err)
	}
	se, err := entries.Get(ctx, "external-api", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service entry: %v", err)
	}
	if got := se.Spec.GetHosts(); len(got) != 1 || got[0] != "api.example.com" {
		t.Errorf("service entry hosts = %v, want [api.example.com]", got)
	}
	if got := se.Spec.GetResolution(); got != apinetworkingv1.ServiceEntry_DNS {
		t.Errorf("service entry resolution = %v, want DNS", got)
	}

	// An outage: the API server goes away for real, then comes back with
	// the same data on the same address.
	cp.StopAPIServer()
	downCtx, downCancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = cp.Client.CoreV1().Services("default").Get(downCtx, "web", metav1.GetOptions{})
	downCancel()
	if err == nil {
		t.Fatal("the API server still answers after StopAPIServer")
	}
	cp.StartAPIServer()
	got, err := cp.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service after API server restart: %v", err)
	}
	if got.UID != svc.UID || got.Spec.ClusterIP != svc.Spec.ClusterIP {
		t.Errorf("service after restart = %s %s, want %s %s", got.UID, got.Spec.ClusterIP, svc.UID, svc.Spec.ClusterIP)
	}

	// A TokenRequest token is accepted by the API server for its audience.
	token := cp.CreateToken(t, "vm-ns", "vm1", "istio-ca")
	review, err := cp.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{"istio-ca"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("review token: %v", err)
	}
	if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:vm-ns:vm1" {
		t.Errorf("token review = %+v, want authenticated as system:serviceaccount:vm-ns:vm1", review.Status)
	}
	if again := cp.CreateToken(t, "vm-ns", "vm1", "istio-ca"); again == "" {
		t.Error("second token for an existing service account is empty")
	}

	// Stop really ends both processes and frees the API server's port.
	cp.Stop()
	for _, p := range []*Process{cp.apiserver, cp.etcd} {
		if err := syscall.Kill(p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Stop: %v", p.name, p.cmd.Process.Pid, err)
		}
	}
	l, err := net.Listen("tcp", strings.TrimPrefix(config.Host, "https://"))
	if err != nil {
		t.Errorf("API server port still in use after Stop: %v", err)
	} else {
		l.Close()
	}
}
