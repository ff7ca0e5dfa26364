package harness

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	// IstiodNamespace is the namespace istiod runs as (POD_NAMESPACE).
	IstiodNamespace = "istio-system"
	// IstiodServerName is the name in the certificate of istiod's TLS
	// xDS port, signed by the root in ConfigMap IstioRootCertConfigMap.
	IstiodServerName = "istiod.istio-system.svc"
	// IstioRootCertConfigMap is the ConfigMap istiod writes its root
	// certificate into, in every namespace, under key "root-cert.pem".
	IstioRootCertConfigMap = "istio-ca-root-cert"
)

// Istiod is a running bin/pilot-discovery (istiod, built from the
// istio.io/istio module by `make istio-binaries`) watching a ControlPlane
// from outside the cluster, with its own self-signed CA. Its methods must be
// called from the goroutine of the test that started it.
type Istiod struct {
	// PlaintextAddr is the 127.0.0.1:PORT of the plaintext xDS (ADS) port,
	// 15010 in a cluster; it needs no authentication.
	PlaintextAddr string
	// TLSAddr is the HOST:PORT of the TLS xDS port, 15012 in a cluster
	// (127.0.0.1 and a free port unless IstiodConfig says otherwise):
	// server name IstiodServerName, root RootCert(), clients authenticate
	// with a service-account token for audience "istio-ca" sent as gRPC
	// metadata "authorization: Bearer TOKEN", or with a certificate from
	// istiod's CA, which is served on the same port.
	TLSAddr string
	// HTTPAddr is the 127.0.0.1:PORT of istiod's HTTP port (8080 in a
	// cluster): /ready and the /debug/ endpoints.
	HTTPAddr string
	// MonitoringAddr is the 127.0.0.1:PORT of istiod's /metrics.
	MonitoringAddr string

	t     TB
	cp    *ControlPlane
	dir   string
	argv  []string
	ports []int // every port it is told to listen on
	p     *Process
}

// IstiodConfig is what StartIstiodWith changes of StartIstiod's istiod.
type IstiodConfig struct {
	// TLSAddr, if set, is the HOST:PORT istiod's TLS xDS port and CA
	// listen on, e.g. the host side of a VM's veth pair at :15012, the
	// address a VM's onboarding files name.
	TLSAddr string
}

// StartIstiod runs bin/pilot-discovery against cp on free loopback ports
// and waits until it reports ready (all its informers synced). It is
// stopped when the test ends. A missing binary fails the test.
func StartIstiod(t TB, cp *ControlPlane) *Istiod {
	t.Helper()
	return StartIstiodWith(t, cp, IstiodConfig{})
}

// StartIstiodWith is StartIstiod with cfg's changes.
func StartIstiodWith(t TB, cp *ControlPlane, cfg IstiodConfig) *Istiod {
	t.Helper()
	bin := requireIstioBinary(t, binaryDir(t), "pilot-discovery")
	// env starts istiod with its own environment and working directory:
	// istiod resolves several paths relative to it (./etc/cacerts,
	// ./var/run/secrets/...), which must not land in the source tree.
	envBin, err := exec.LookPath("env")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	dir := t.TempDir()
	ports, err := freePorts(6)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	d := &Istiod{
		PlaintextAddr:  addr(0),
		TLSAddr:        addr(1),
		HTTPAddr:       addr(2),
		MonitoringAddr: addr(3),
		t:              t,
		cp:             cp,
		dir:            dir,
		ports:          ports,
	}
	if cfg.TLSAddr != "" {
		d.TLSAddr = cfg.TLSAddr
	}
	d.argv = []string{
		"--chdir=" + dir,
		"POD_NAMESPACE=" + IstiodNamespace,
		"POD_NAME=istiod-0",
		"REVISION=default",
		"PILOT_CERT_PROVIDER=istiod",
		"ENABLE_CA_SERVER=true",
		bin, "discovery",
		"--kubeconfig", cp.Kubeconfig,
		"--meshConfig", "/nonexistent", // the default mesh
		"--grpcAddr", d.PlaintextAddr,
		"--secureGRPCAddr", d.TLSAddr,
		"--httpAddr", d.HTTPAddr,
		"--monitoringAddr", d.MonitoringAddr,
		// Webhooks, by default on :15017 on every interface.
		"--httpsAddr", addr(4),
		// ControlZ, by default on localhost:9876.
		"--ctrlz_address", "127.0.0.1",
		"--ctrlz_port", strconv.Itoa(ports[5]),
	}
	t.Cleanup(func() {
		if d.p == nil {
			return
		}
		d.p.Stop()
		if t.Failed() {
			t.Logf("harness: last lines of the istiod log:\n%s", d.p.LogTail(60))
		}
	})
	d.start(envBin)
	return d
}

func (d *Istiod) start(envBin string) {
	d.t.Helper()
	begin := time.Now()
	p, err := startProcess("istiod", envBin, d.argv, filepath.Join(d.dir, "istiod.log"))
	if err != nil {
		d.t.Fatalf("harness: %v", err)
	}
	d.p = p
	if err := waitReady(p, "http://"+d.HTTPAddr+"/ready", ""); err != nil {
		p.Stop()
		d.t.Logf("harness: last lines of the istiod log:\n%s", p.LogTail(80))
		d.t.Fatalf("harness: %v", err)
	}
	d.t.Logf("harness: istiod ready in %s, xDS on %s (plaintext) and %s (TLS)",
		time.Since(begin).Round(time.Millisecond), d.PlaintextAddr, d.TLSAddr)
}

// Stop stops istiod (SIGTERM, then SIGKILL after a grace period). It may be
// called more than once.
func (d *Istiod) Stop() {
	if d.p != nil {
		d.p.Stop()
	}
}

// Restart stops istiod if it is running and starts it again with the same
// ports and working directory, and waits until it is ready. Its CA keeps its
// root: the key lives in Secret istio-ca-secret in istio-system.
func (d *Istiod) Restart() {
	d.t.Helper()
	d.Stop()
	envBin, err := exec.LookPath("env")
	if err != nil {
		d.t.Fatalf("harness: %v", err)
	}
	d.start(envBin)
}

// Pid is the process ID of the running istiod: a new one after each
// Restart. Faults are injected with it (SIGKILL, SIGSTOP).
func (d *Istiod) Pid() int { return d.p.Pid() }

// Log returns the last n lines of the istiod log.
func (d *Istiod) Log(n int) string { return d.p.LogTail(n) }

// RootCert returns istiod's root certificate (PEM) from ConfigMap
// istio-ca-root-cert in istio-system, waiting for istiod to write it.
func (d *Istiod) RootCert() []byte {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var root []byte
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		cm, err := d.cp.Client.CoreV1().ConfigMaps(IstiodNamespace).Get(ctx, IstioRootCertConfigMap, metav1.GetOptions{})
		if err != nil {
			last = err // NotFound until istiod's CA is up; the API server may be restarting
			return false, nil
		}
		root = []byte(cm.Data["root-cert.pem"])
		return len(root) > 0, nil
	})
	if err != nil {
		d.t.Logf("harness: last lines of the istiod log:\n%s", d.p.LogTail(60))
		d.t.Fatalf("harness: no root certificate in ConfigMap %s/%s after %s: %v (last error: %v)",
			IstiodNamespace, IstioRootCertConfigMap, readyTimeout, err, last)
	}
	block, _ := pem.Decode(root)
	if block == nil {
		d.t.Fatalf("harness: ConfigMap %s/%s: root-cert.pem is not PEM", IstiodNamespace, IstioRootCertConfigMap)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		d.t.Fatalf("harness: ConfigMap %s/%s: root-cert.pem: %v", IstiodNamespace, IstioRootCertConfigMap, err)
	}
	return root
}

// requireIstioBinary is requireBinary for the binaries of test/istio.
func requireIstioBinary(t TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("harness: %s is missing (%v); run `make istio-binaries` at the repository root", path, err)
	}
	return path
}
