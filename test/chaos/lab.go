package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// meshNamespace holds the mesh's Services; the xds node is in it too.
const meshNamespace = "chaos"

// vmGroup is the VM the docs/vm/Corefile rows run in, onboarded to istiod
// as Istio's VM guide onboards one.
var vmGroup = harness.WorkloadGroup{Namespace: "vm-ns", Name: "app", ServiceAccount: "app-sa"}

// lab is what every row shares: one etcd and kube-apiserver, one istiod
// reading them, the test upstream, and, for the docs/vm/Corefile rows, a VM
// onboarded to that istiod.
type lab struct {
	t    harness.TB
	prof profile
	opt  options
	ctx  context.Context
	cp   *harness.ControlPlane
	api  *harness.API
	// istiod serves xDS on 127.0.0.1 (plaintext) and, with a VM, on the
	// VM's link at :15012 (TLS), the address the onboarding files name.
	istiod     *harness.Istiod
	up         *upstream
	upAddr     string // the upstream on 127.0.0.1
	vm         *harness.VM
	istioFiles string
	meshFile   string // the file source's table: the mesh Services' names
	serverCPU  int
	loadCPU    int
	fresh      int // Services created so far by fresh
}

// newLab starts what the selected faults need. This program, and with it
// every child it starts but the servers, runs on the load CPU.
func newLab(t harness.TB, prof profile, opt options, needIstiod, needVM bool) *lab {
	t.Helper()
	l := &lab{t: t, prof: prof, opt: opt, ctx: context.Background(), serverCPU: 0, loadCPU: 0}
	if runtime.NumCPU() >= 2 {
		l.serverCPU, l.loadCPU = 1, 0
		if err := harness.SetAffinity(os.Getpid(), l.loadCPU); err != nil {
			t.Fatalf("pin this program to CPU %d: %v", l.loadCPU, err)
		}
		t.Cleanup(func() {
			all := make([]int, runtime.NumCPU())
			for i := range all {
				all[i] = i
			}
			_ = harness.SetAffinity(os.Getpid(), all...)
		})
	}
	l.cp = harness.Start(t)
	l.api = &harness.API{T: t, CP: l.cp, Ctx: l.ctx}
	upAddrs := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreeDNSPort(t, "127.0.0.1")))}
	l.upAddr = upAddrs[0]
	switch {
	case needVM:
		l.vm = harness.StartVM(t, "chaos-vm")
		l.istiod = harness.StartIstiodWith(t, l.cp, harness.IstiodConfig{TLSAddr: net.JoinHostPort(l.vm.HostIP.String(), "15012")})
		l.istioFiles = harness.OnboardVM(t, l.cp, vmGroup, l.vm.HostIP.String())
		// The VM's upstream.conf can name no port: the upstream listens
		// on :53 of the VM's link too.
		upAddrs = append(upAddrs, net.JoinHostPort(l.vm.HostIP.String(), "53"))
	case needIstiod:
		l.istiod = harness.StartIstiod(t, l.cp)
	}
	l.up = startUpstream(t, upAddrs...)

	l.api.Namespace(meshNamespace)
	table := map[string]any{}
	for _, m := range meshServices {
		l.api.Service(service(m.name, m.ip))
		table[m.host()] = map[string]any{"ips": []string{m.ip}, "registry": "Kubernetes"}
	}
	data, err := json.Marshal(map[string]any{"table": table})
	if err != nil {
		t.Fatalf("%v", err)
	}
	l.meshFile = filepath.Join(t.TempDir(), "mesh.json")
	if err := os.WriteFile(l.meshFile, data, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	return l
}

// service is a ClusterIP Service of the mesh namespace with an address
// chosen here, so its answer is known before the API server has it.
func service(name, ip string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: meshNamespace, Name: name},
		Spec: corev1.ServiceSpec{
			ClusterIP: ip,
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
}

// serviceEntry is a ServiceEntry of the mesh namespace for host, with
// fixed addresses.
func serviceEntry(name, host string, addrs ...string) *networkingv1.ServiceEntry {
	return &networkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Namespace: meshNamespace, Name: name},
		Spec: apinetworking.ServiceEntry{
			Hosts: []string{host}, Addresses: addrs, Resolution: apinetworking.ServiceEntry_STATIC,
			Ports: []*apinetworking.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}},
		},
	}
}

// freshService is a Service no server has seen, not created yet, and the
// probe its answer must satisfy. Their addresses are in 10.97.0.0/16, out
// of the way of the mesh's and the seeded ones.
func (l *lab) freshService() (*corev1.Service, harness.Probe) {
	l.fresh++
	name := fmt.Sprintf("fresh-%d", l.fresh)
	ip := fmt.Sprintf("10.97.%d.%d", l.fresh/250, l.fresh%250+1)
	return service(name, ip), harness.Probe{Name: hostOf(name) + ".", Qtype: typeA, Want: ip}
}

// createFresh creates a fresh Service and returns its probe.
func (l *lab) createFresh() harness.Probe {
	l.t.Helper()
	svc, p := l.freshService()
	l.api.Service(svc)
	return p
}

// newServer prepares a server of source for the fault f: its Corefile,
// from the shipped one, in a directory of its own. It is not started.
func (l *lab) newServer(f *fault, source string) *server {
	l.t.Helper()
	s := &server{source: source, cpu: l.serverCPU, t: l.t, dir: l.t.TempDir()}
	var err error
	if source == srcVM {
		s.vm, s.addr, s.readyURL = l.vm, vmDNSAddr, "http://"+vmReadyAddr+"/ready"
		s.corefile, s.snapshot, err = l.vmServerCorefile(s.dir)
	} else {
		ports := harness.FreePorts(l.t, 2)
		port := harness.FreeDNSPort(l.t, "127.0.0.1")
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ready := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		s.readyURL, s.metrics = "http://"+ready+"/ready", "http://"+metrics+"/metrics"
		var lines []string
		switch source {
		case srcKubernetes:
			lines = []string{"kubernetes " + l.cp.Kubeconfig}
		case srcXDS:
			lines, s.snapshot = l.xdsLines(f, s.dir)
		}
		s.corefile, err = hostCorefile(l.opt.corefile, s.dir, port, ready, metrics, l.upAddr, l.meshFile, lines)
	}
	if err != nil {
		l.t.Fatalf("%s Corefile: %v", source, err)
	}
	return s
}

// xdsLines is the xds source on istiod's plaintext port for a node in the
// mesh namespace, with a snapshot as docs/vm/Corefile keeps one, unless
// the fault says otherwise; and the snapshot's path.
func (l *lab) xdsLines(f *fault, dir string) ([]string, string) {
	lines := []string{
		"xds " + l.istiod.PlaintextAddr + " {",
		"    insecure",
		"    node_ip 10.0.0.5",
		"    workload chaos-node",
		"    namespace " + meshNamespace,
	}
	snapshot := ""
	switch {
	case f.noSnapshot:
	case f.snapshotDir != nil:
		snapshot = filepath.Join(f.snapshotDir(l), "snapshot.json")
	default:
		snapshot = filepath.Join(dir, "snapshot.json")
	}
	if snapshot != "" {
		lines = append(lines, "    snapshot "+snapshot)
	}
	return append(lines, "}"), snapshot
}

// vmServerCorefile renders docs/vm/Corefile for the VM, with a copy of the
// onboarding files, an empty state directory as a fresh install has, and
// the upstream on the VM's link; it returns the Corefile and the snapshot.
func (l *lab) vmServerCorefile(dir string) (string, string, error) {
	istio, state := filepath.Join(dir, "etc", "istio"), filepath.Join(dir, "state")
	upstream := filepath.Join(dir, "etc", "upstream.conf")
	snapshot := filepath.Join(state, "snapshot.json")
	if err := os.CopyFS(istio, os.DirFS(l.istioFiles)); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(upstream, []byte("nameserver "+l.vm.HostIP.String()+"\n"), 0o644); err != nil {
		return "", "", err
	}
	corefile, err := vmCorefile(l.opt.vmCorefile, dir, map[string]string{
		"/etc/meshdns/istio":             istio,
		"/var/lib/meshdns/certs":         filepath.Join(state, "certs"),
		"/var/lib/meshdns/snapshot.json": snapshot,
		"/etc/meshdns/upstream.conf":     upstream,
	})
	return corefile, snapshot, err
}

// sleep waits d, or less if the run is interrupted.
func (l *lab) sleep(d time.Duration) {
	select {
	case <-l.ctx.Done():
	case <-time.After(d):
	}
}
