// Package harness holds what the integration tests under test/, the
// benchmark programs under test/bench and test/demo run meshdns against, and
// the helpers they share to drive and measure it. Its functions take a TB:
// a test's *testing.T, or a Runner in a program, whose cleanups run at
// Teardown and whose Fatalf tears down and exits.
//
// Control plane:
//   - ControlPlane (harness.go): a real etcd and kube-apiserver on loopback
//     ports, with the Istio CRDs of the istio.io/api module the test module
//     pins installed (crds.go) and istio-system created; the API server can
//     be stopped and started again, and service-account tokens issued, or
//     signed already expired (token.go).
//   - API (api.go): creating, updating and deleting Services,
//     EndpointSlices, ServiceEntries and WorkloadEntries; the Multi-Cluster
//     Services ServiceImport CRD and ServiceImports (mcs.go).
//   - SeedServices (seed.go): Services written straight into etcd, for the
//     benchmarks' bulk setup; OutdateResourceVersions and
//     DeleteServiceInEtcd (relist.go): what forces a watcher to list again
//     after an outage, and proves it did.
//   - Istiod (istiod.go): bin/pilot-discovery watching a ControlPlane;
//     RemoteSecret (remote.go): an Istio remote secret for another cluster;
//     OnboardVM (onboard.go): the cluster side of Istio's VM onboarding,
//     with the real bin/istioctl.
//   - NameTable (nds.go): Istio's NDS table fetched from istiod as a
//     sidecar's node would, and decoded.
//
// Processes and VMs:
//   - Process (process.go): a child process in its own process group, its
//     output in a log file; CopyBinary, the private copy of bin/coredns a
//     benchmark runs.
//   - CoreDNS (coredns.go, corefile.go): bin/coredns with a meshdns block or
//     a whole Corefile, on free ports (FreePorts, FreeDNSPort).
//   - VM (vm.go): a network namespace standing in for a VM, with its own
//     /etc files, to run processes and resolve names inside.
//
// DNS:
//   - ServeDNS (dnsserver.go): a scripted resolver, any dns.Handler, served
//     over UDP and TCP.
//   - Answer (answer.go): a reply written as a comparable string.
//   - Load (load.go): queries at a steady rate over UDP sockets, and a Tally
//     of the answers they got.
//
// Measurement and placement, mostly for the benchmark programs:
//   - procfs.go: readings of /proc (RSS, peak RSS and its reset, CPU time,
//     I/O, the load average, the CPU model), a Sampler of RSS and bytes read
//     over time, pinning the harness's children (etcd, kube-apiserver) to a
//     CPU (PinChildren, PinControlPlane), a metric scraped from a Prometheus
//     endpoint, and Download of a pprof profile.
//   - parallel.go: Parallel, which spreads bulk creation over workers, and
//     the CPU affinity and nice value of every thread of a process.
//   - Percentile and MiB (stats.go): a percentile of sorted durations, by
//     nearest rank, and a byte count as the reports write it.
//
// The binaries come from `make test-binaries` (etcd and kube-apiserver,
// test/controlplane), `make istio-binaries` (pilot-discovery and istioctl,
// test/istio) and `make build` (coredns), and are looked up in
// $MESHDNS_BIN_DIR, or else in the bin/ directory of the repository. A
// missing one fails, never skips.
package harness

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	rootModule = "github.com/meshdns/meshdns"
	testModule = "github.com/meshdns/meshdns/test"

	// ServiceCIDRs are the Service ClusterIP ranges of the API server,
	// IPv4 first, so Services are dual-stack capable. The IPv4 range is
	// kubeadm's default /12 (the largest the API server takes), so the
	// benchmarks' 100k Services fit without extra ServiceCIDR objects.
	ServiceCIDRs = "10.96.0.0/12,fd00:10:96::/112"

	readyTimeout = 90 * time.Second
	stopGrace    = 10 * time.Second
)

// ControlPlane is a running etcd and kube-apiserver. Its methods must be
// called from the goroutine of the test that started it.
type ControlPlane struct {
	// Kubeconfig is the path of a kubeconfig file with admin rights.
	Kubeconfig string
	RESTConfig *rest.Config
	Client     kubernetes.Interface
	Istio      istioclient.Interface

	t             TB
	dir           string
	token         string
	apiserverURL  string
	etcdURL       string
	apiserverBin  string
	apiserverArgs []string
	etcd          *Process
	apiserver     *Process
}

// Start starts etcd and kube-apiserver, installs the Istio CRDs, creates the
// istio-system namespace and returns once all of it is usable. Everything is
// torn down when the test ends.
func Start(t TB) *ControlPlane {
	t.Helper()
	binDir := binaryDir(t)
	etcdBin := requireBinary(t, binDir, "etcd")
	apiserverBin := requireBinary(t, binDir, "kube-apiserver")

	// TempDir before Cleanup: cleanups run last-in first-out, so the
	// processes are gone before their directory is removed.
	dir := t.TempDir()
	cp := &ControlPlane{t: t, dir: dir, apiserverBin: apiserverBin}
	t.Cleanup(cp.Stop)

	begin := time.Now()
	ports, err := freePorts(3)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	cp.etcdURL = etcdURL
	cp.etcd, err = startProcess("etcd", etcdBin, []string{
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-url", etcdURL,
		"--listen-peer-url", "http://127.0.0.1:" + strconv.Itoa(ports[1]),
	}, filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	if err := waitReady(cp.etcd, etcdURL+"/health", ""); err != nil {
		cp.fatal(cp.etcd, err)
	}

	cp.token, err = randomHex(16)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	tokenFile, pubKey, privKey, err := writeCredentials(dir, cp.token)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	cp.apiserverURL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	cp.apiserverArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + tokenFile,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pubKey,
		"--service-account-signing-key-file=" + privKey,
		"--service-cluster-ip-range=" + ServiceCIDRs,
		"--authorization-mode=RBAC",
	}
	cp.StartAPIServer()

	if err := cp.connect(); err != nil {
		t.Fatalf("harness: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := installIstioCRDs(ctx, cp.RESTConfig); err != nil {
		t.Fatalf("harness: %v", err)
	}
	if err := cp.ensureNamespace(ctx, "istio-system"); err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Logf("harness: control plane ready in %s, API server %s", time.Since(begin).Round(time.Millisecond), cp.apiserverURL)
	return cp
}

// StopAPIServer stops the kube-apiserver; etcd keeps running.
func (cp *ControlPlane) StopAPIServer() {
	cp.t.Helper()
	if cp.apiserver == nil || cp.apiserver.Exited() {
		cp.t.Fatalf("harness: StopAPIServer: the API server is not running")
	}
	cp.apiserver.Stop()
}

// StartAPIServer starts the kube-apiserver again, on the same port and with
// the same etcd, and waits until it is ready.
func (cp *ControlPlane) StartAPIServer() {
	cp.t.Helper()
	if cp.apiserver != nil && !cp.apiserver.Exited() {
		cp.t.Fatalf("harness: StartAPIServer: the API server is already running")
	}
	begin := time.Now()
	p, err := startProcess("kube-apiserver", cp.apiserverBin, cp.apiserverArgs, filepath.Join(cp.dir, "kube-apiserver.log"))
	if err != nil {
		cp.t.Fatalf("harness: %v", err)
	}
	cp.apiserver = p
	if err := waitReady(p, cp.apiserverURL+"/readyz", cp.token); err != nil {
		cp.fatal(p, err)
	}
	cp.t.Logf("harness: kube-apiserver ready in %s", time.Since(begin).Round(time.Millisecond))
}

// Stop kills the API server and etcd. It is registered with t.Cleanup by
// Start and may be called more than once.
func (cp *ControlPlane) Stop() {
	if cp.apiserver != nil {
		cp.apiserver.Stop()
	}
	if cp.etcd != nil {
		cp.etcd.Stop()
	}
}

// CreateToken returns a token for the service account, bound to audience
// (the API server's default audience if empty), from the TokenRequest API.
// The namespace and service account are created if missing.
func (cp *ControlPlane) CreateToken(t TB, namespace, serviceAccount, audience string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cp.ensureNamespace(ctx, namespace); err != nil {
		t.Fatalf("harness: %v", err)
	}
	accounts := cp.Client.CoreV1().ServiceAccounts(namespace)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}
	if _, err := accounts.Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("harness: create service account %s/%s: %v", namespace, serviceAccount, err)
	}
	req := &authenticationv1.TokenRequest{}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	resp, err := accounts.CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("harness: request token for %s/%s: %v", namespace, serviceAccount, err)
	}
	return resp.Status.Token
}

func (cp *ControlPlane) ensureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := cp.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// connect writes the kubeconfig file and builds the clients from it, so the
// file is known to work.
func (cp *ControlPlane) connect() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["meshdns"] = &clientcmdapi.Cluster{Server: cp.apiserverURL, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: cp.token}
	cfg.Contexts["meshdns"] = &clientcmdapi.Context{Cluster: "meshdns", AuthInfo: "admin"}
	cfg.CurrentContext = "meshdns"
	path := filepath.Join(cp.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}

	restConfig, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	// The defaults (5 QPS) would make tests that create many objects slow.
	restConfig.QPS = 500
	restConfig.Burst = 1000
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	istio, err := istioclient.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("istio client: %w", err)
	}
	cp.Kubeconfig, cp.RESTConfig, cp.Client, cp.Istio = path, restConfig, client, istio
	return nil
}

// fatal stops everything and fails the test with the end of p's log.
func (cp *ControlPlane) fatal(p *Process, err error) {
	cp.t.Helper()
	cp.Stop()
	cp.t.Logf("harness: last lines of the %s log:\n%s", p.name, p.LogTail(80))
	cp.t.Fatalf("harness: %v", err)
}

// waitReady polls url until it answers 200 OK, p exits or readyTimeout passes.
func waitReady(p *Process, url, token string) error {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			// The API server's certificate is self-signed in its cert dir.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(readyTimeout)
	last := "no answer"
	for {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness request for %s: %w", p.name, err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; last answer from %s: %s", p.name, readyTimeout, url, last)
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v", p.name, p.err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// binaryDir is $MESHDNS_BIN_DIR, or else bin/ at the repository root.
func binaryDir(t TB) string {
	t.Helper()
	if dir := os.Getenv("MESHDNS_BIN_DIR"); dir != "" {
		return dir
	}
	root, err := findModuleDir(rootModule)
	if err != nil {
		t.Fatalf("harness: %v (or set MESHDNS_BIN_DIR)", err)
	}
	return filepath.Join(root, "bin")
}

// requireBinary fails, never skips, when a binary is missing: in CI a
// missing binary is a broken build, not a reason to test less.
func requireBinary(t TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("harness: %s is missing (%v); run `make test-binaries` at the repository root", path, err)
	}
	return path
}

// findModuleDir walks up from the working directory to the directory whose
// go.mod declares module path.
func findModuleDir(path string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if modulePath(filepath.Join(dir, "go.mod")) == path {
			return dir, nil
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("no go.mod of module %s above %s", path, wd)
		}
	}
}

// modulePath returns the module path declared in a go.mod file, or "".
func modulePath(goMod string) string {
	f, err := os.Open(goMod)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. All are held
// open together so that the same port cannot be returned twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeCredentials writes the static token file and the service account
// signing key pair into dir.
func writeCredentials(dir, token string) (tokenFile, pubKey, privKey string, err error) {
	tokenFile = filepath.Join(dir, "tokens.csv")
	line := token + `,admin,admin-uid,"system:masters"` + "\n"
	if err := os.WriteFile(tokenFile, []byte(line), 0o600); err != nil {
		return "", "", "", fmt.Errorf("write token file: %w", err)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", "", fmt.Errorf("generate service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", "", fmt.Errorf("marshal service account public key: %w", err)
	}
	privKey = filepath.Join(dir, "sa.key")
	pubKey = filepath.Join(dir, "sa.pub")
	files := map[string]*pem.Block{
		privKey: {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
		pubKey:  {Type: "PUBLIC KEY", Bytes: pub},
	}
	for path, block := range files {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return "", "", "", fmt.Errorf("write %s: %w", path, err)
		}
	}
	return tokenFile, pubKey, privKey, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
