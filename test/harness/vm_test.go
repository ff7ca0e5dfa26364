package harness

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityapi "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVM(t *testing.T) {
	RequireVMs(t)
	machineResolv, _ := os.ReadFile("/etc/resolv.conf")
	machineHosts, _ := os.ReadFile("/etc/hosts")
	var netns, hostVeth string
	t.Run("inside", func(t *testing.T) {
		v := StartVM(t, "vm-a")
		netns, hostVeth = v.Netns, "mdh-"+strings.Join(strings.Split(v.HostIP.String(), ".")[1:3], "-")
		if !netip.MustParsePrefix("10.200.0.0/13").Contains(v.IP) || v.HostIP.Next() != v.IP {
			t.Errorf("VM at %s, machine at %s: want 10.200.0.0/13, .1 and .2 of a /30", v.IP, v.HostIP)
		}
		// A resolver on the machine's end of the link, for the VM.
		upstream := net.JoinHostPort(v.HostIP.String(), "53")
		serveDNS(t, upstream, map[string]string{"host.corp.example.": "192.0.2.7"})
		v.WriteResolvConf("nameserver " + v.HostIP.String() + "\nsearch corp.example\n")

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, _, err := v.Run(ctx, "sh", "-c", "hostname; cat /etc/resolv.conf; ip -br addr show eth0")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"vm-a\n", "nameserver " + v.HostIP.String(), v.IP.String() + "/30"} {
			if !strings.Contains(out, want) {
				t.Errorf("inside the VM: no %q in\n%s", want, out)
			}
		}
		// glibc with the search list, and a name nobody has.
		for name, want := range map[string]string{"host": "192.0.2.7", "host.corp.example": "192.0.2.7", "nothing.example": "NOTFOUND"} {
			got, canonical, err := v.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || (want != "NOTFOUND" && canonical != "host.corp.example") {
				t.Errorf("getent ahosts %s in the VM = %q (canonical %q), want %q (host.corp.example)", name, got, canonical, want)
			}
		}

		// A server inside, on the VM's own loopback, reached from the test.
		corefile := filepath.Join(t.TempDir(), "Corefile")
		if err := os.WriteFile(corefile, []byte(".:53 {\n\tbind 127.0.0.2\n\tready 127.0.0.1:8181\n\twhoami\n}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := v.Start("coredns", []string{CoreDNSBinary(t), "-conf", corefile}, filepath.Join(t.TempDir(), "coredns.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, _, err := v.HTTPGet("http://127.0.0.1:8181/ready")
			if code == 200 {
				break
			}
			if time.Now().After(deadline) || p.Exited() {
				t.Fatalf("ready inside the VM: %d %v\n%s", code, err, p.LogTail(20))
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, network := range []string{"udp", "tcp"} {
			if got := v.Answer("127.0.0.2:53", "who.example", dns.TypeA, network); got != "NODATA" {
				t.Errorf("whoami inside the VM over %s = %q", network, got)
			}
		}
	})
	if _, err := os.Stat("/run/netns/" + netns); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s is still there after its test: %v", netns, err)
	}
	if _, err := net.InterfaceByName(hostVeth); err == nil {
		t.Errorf("interface %s is still there after its test", hostVeth)
	}
	if r, _ := os.ReadFile("/etc/resolv.conf"); string(r) != string(machineResolv) {
		t.Errorf("the machine's /etc/resolv.conf changed")
	}
	if h, _ := os.ReadFile("/etc/hosts"); string(h) != string(machineHosts) {
		t.Errorf("the machine's /etc/hosts changed")
	}
}

// serveDNS answers A queries for names from records over UDP and TCP on
// addr, NXDOMAIN for anything else.
func serveDNS(t *testing.T, addr string, records map[string]string) {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if ip, ok := records[strings.ToLower(q.Name)]; !ok {
			m.Rcode = dns.RcodeNameError
		} else if q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 60 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	ServeDNS(t, addr, handler)
}

// TestOnboardVM onboards a VM with the real istioctl and checks, from
// inside the VM, what the files are good for: the address in hosts, the
// root, the token traded for a certificate, the certificate renewed and
// used for NDS without the token, before and after istiod restarts.
func TestOnboardVM(t *testing.T) {
	RequireVMs(t)
	cp := Start(t)
	v := StartVM(t, "vm1")
	istiodAddr := net.JoinHostPort(v.HostIP.String(), "15012")
	istiod := StartIstiodWith(t, cp, IstiodConfig{TLSAddr: istiodAddr})
	wg := WorkloadGroup{Namespace: "vm-ns", Name: "vm1", ServiceAccount: "vm1-sa"}
	dir := OnboardVM(t, cp, wg, v.HostIP.String())

	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, f := range []string{"cluster.env", "mesh.yaml", "hosts"} {
		t.Logf("%s:\n%s", f, read(f))
	}

	env := parseClusterEnv(t, read("cluster.env"))
	for k, want := range map[string]string{
		"ISTIO_META_CLUSTER_ID": "Kubernetes", "ISTIO_META_DNS_CAPTURE": "true", "ISTIO_META_WORKLOAD_NAME": wg.Name,
		"ISTIO_META_AUTO_REGISTER_GROUP": wg.Name, "ISTIO_NAMESPACE": wg.Namespace, "POD_NAMESPACE": wg.Namespace,
		"SERVICE_ACCOUNT": wg.ServiceAccount, "TRUST_DOMAIN": "cluster.local", "ISTIO_META_NETWORK": "",
		"CANONICAL_SERVICE": wg.Name,
	} {
		if got, ok := env[k]; !ok || got != want {
			t.Errorf("cluster.env: %s = %q (set %v), want %q", k, got, ok, want)
		}
	}
	if !strings.Contains(read("mesh.yaml"), "discoveryAddress: "+IstiodServerName+":15012\n") {
		t.Errorf("mesh.yaml has no discoveryAddress %s:15012", IstiodServerName)
	}
	if got, want := read("hosts"), v.HostIP.String()+" "+IstiodServerName+"\n"; got != want {
		t.Errorf("hosts = %q, want %q", got, want)
	}
	root := x509.NewCertPool()
	if !root.AppendCertsFromPEM([]byte(read("root-cert.pem"))) {
		t.Fatalf("root-cert.pem holds no certificate")
	}
	token := read("istio-token")
	claims := jwtClaims(t, token)
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 3600 {
		t.Errorf("istio-token lives %v s, want 3600", exp-iat)
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != "istio-ca" {
		t.Errorf("istio-token audience %v, want [istio-ca]", claims["aud"])
	}

	// From inside the VM to the address hosts gives, checked with the root.
	dialVM := func(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
		t.Helper()
		cfg := &tls.Config{RootCAs: root, ServerName: IstiodServerName}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		conn, err := grpc.NewClient("passthrough:///"+istiodAddr,
			grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return v.DialContext(ctx, "tcp", addr)
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	spiffe := "spiffe://cluster.local/ns/" + wg.Namespace + "/sa/" + wg.ServiceAccount
	issue := func(t *testing.T, conn *grpc.ClientConn, token string, lifetime time.Duration) (*tls.Certificate, *x509.Certificate, error) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(spiffe)
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		resp, err := securityapi.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityapi.IstioCertificateRequest{
			Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), ValidityDuration: int64(lifetime.Seconds()),
		})
		if err != nil {
			return nil, nil, err
		}
		chain := resp.GetCertChain()
		if len(chain) < 2 {
			t.Fatalf("certificate chain of %d, want leaf and root", len(chain))
		}
		cert := &tls.Certificate{PrivateKey: key}
		var leaf *x509.Certificate
		for i, c := range chain {
			b, _ := pem.Decode([]byte(c))
			if b == nil {
				t.Fatalf("chain element %d is not PEM", i)
			}
			cert.Certificate = append(cert.Certificate, b.Bytes)
			if i == 0 {
				if leaf, err = x509.ParseCertificate(b.Bytes); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffe {
			t.Errorf("certificate for %v, want %s", leaf.URIs, spiffe)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: root, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("the certificate does not verify against root-cert.pem: %v", err)
		}
		return cert, leaf, nil
	}
	node := SidecarNode(v.IP.String(), v.Hostname, wg.Namespace, nil)
	nds := func(t *testing.T, conn *grpc.ClientConn) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		table, err := WatchNameTable(ctx, conn, node, nil)
		if err != nil {
			t.Fatalf("NDS over mTLS without a token: %v", err)
		}
		if _, ok := table["kubernetes.default.svc.cluster.local"]; !ok {
			t.Errorf("NDS table without kubernetes.default: %v", table)
		}
	}

	var cert *tls.Certificate
	t.Run("token to certificate", func(t *testing.T) {
		// istiod backdates a certificate by two minutes and honours any
		// lifetime asked for: NotAfter is the request's time plus it.
		const lifetime = 20 * time.Second
		asked := time.Now()
		c, leaf, err := issue(t, dialVM(t, nil), token, lifetime)
		if err != nil {
			t.Fatalf("CreateCertificate with istio-token: %v", err)
		}
		cert = c
		if d := leaf.NotAfter.Sub(asked); d < lifetime-2*time.Second || d > lifetime+2*time.Second {
			t.Errorf("asked for %s: NotAfter is %s after the request", lifetime, d)
		}
		t.Logf("asked for %s: NotBefore %s, NotAfter %s (now %s)", lifetime, leaf.NotBefore, leaf.NotAfter, asked.UTC())
	})
	if cert == nil {
		t.FailNow()
	}
	t.Run("renewal and NDS with the certificate alone", func(t *testing.T) {
		conn := dialVM(t, cert)
		if _, _, err := issue(t, conn, "", time.Hour); err != nil {
			t.Errorf("CreateCertificate over mTLS without a token: %v", err)
		}
		nds(t, conn)
	})
	t.Run("bad tokens", func(t *testing.T) {
		// ExpiredToken signs as TokenRequest does: the same token, still
		// valid, is accepted, so the expired one is refused for its age.
		review := func(token string) *authenticationv1.TokenReviewStatus {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := cp.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
				Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{"istio-ca"}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return &r.Status
		}
		now := time.Now()
		valid := cp.signToken(t, wg.Namespace, wg.ServiceAccount, "istio-ca", now.Add(-time.Minute), now.Add(time.Hour))
		if s := review(valid); !s.Authenticated || s.User.Username != "system:serviceaccount:"+wg.Namespace+":"+wg.ServiceAccount {
			t.Errorf("a valid signed token: %+v", s)
		}
		expired := cp.ExpiredToken(t, wg.Namespace, wg.ServiceAccount, "istio-ca")
		if s := review(expired); s.Authenticated || !strings.Contains(s.Error, "expired") {
			t.Errorf("an expired token: %+v, want refused as expired", s)
		}
		for name, tok := range map[string]string{"garbage": "garbage", "expired": expired} {
			_, _, err := issue(t, dialVM(t, nil), tok, time.Hour)
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("CreateCertificate with a %s token: %v, want Unauthenticated", name, err)
			}
		}
	})
	t.Run("istiod restarted", func(t *testing.T) {
		istiod.Restart()
		conn := dialVM(t, cert)
		if _, _, err := issue(t, conn, "", time.Hour); err != nil {
			t.Errorf("CreateCertificate over mTLS after the restart: %v", err)
		}
		nds(t, conn)
	})
}

// parseClusterEnv reads cluster.env as sh would: NAME=VALUE lines, VALUE
// as istioctl quotes it (single quotes, '\” for a quote).
func parseClusterEnv(t *testing.T, s string) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("cluster.env: not an assignment: %q", sc.Text())
		}
		if strings.HasPrefix(v, "'") {
			v = strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'"), `'\''`, "'")
		}
		env[k] = v
	}
	return env
}

// jwtClaims decodes the claims of a JWT without checking it.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}
