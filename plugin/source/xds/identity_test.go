package xds

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// certSource is a source on istiod over TLS with a token and cert_dir.
func certSource(t *testing.T, addr string, p pki, dir, token string) *Source {
	s := testSource(addr)
	s.Insecure, s.CAFile, s.ServerName = false, p.ca, "istiod.istio-system.svc"
	s.TokenFile, s.CertDir, s.CertLifetime = filepath.Join(dir, "token"), filepath.Join(dir, "certs"), 4*time.Second
	if err := os.WriteFile(s.TokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	// Runs after the source is stopped, before the directory goes.
	t.Cleanup(func() {
		if s.id != nil {
			<-s.id.done
		}
	})
	return s
}

// The token buys the first certificate; from then on the certificate
// renews itself and carries the stream, and after a restart the kept one
// does, whatever became of the token.
func TestCertificateIdentity(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	f := newFake()
	f.ca = newFakeCA(p)
	addr, _ := serve(t, f, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(p.optionalClientTLS(t))))
	token := fakeJWT(t, "system:serviceaccount:vm-ns:vm-sa", time.Hour)
	s := certSource(t, addr, p, dir, token)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx, newSink()); err != nil {
		t.Fatal(err)
	}

	const spiffe = "spiffe://cluster.local/ns/vm-ns/sa/vm-sa"
	first := f.ca.next(t, 5*time.Second)
	if first.auth != "Bearer "+token || first.peer != "" || first.san != spiffe || first.validity != 4 || first.clusterID != DefaultCluster {
		t.Fatalf("first certificate asked for with %+v", first)
	}
	// The stream opened before the certificate came may use the token;
	// every stream after it uses the certificate alone.
	before := f.next(t)
	for deadline := time.Now().Add(5 * time.Second); s.id.certificate() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no certificate")
		}
	}
	f.kick <- struct{}{}
	if r := f.next(t); r.stream == before.stream || r.auth != "" || r.peer != spiffe {
		t.Fatalf("stream %d after the certificate: authorization %q, certificate %q", r.stream, r.auth, r.peer)
	}
	// Renewed halfway through its 4 s, with itself, twice.
	for range 2 {
		if c := f.ca.next(t, 5*time.Second); c.auth != "" || c.peer != spiffe || c.san != spiffe {
			t.Fatalf("renewal asked for with %+v", c)
		}
	}
	if ok := testutil.ToFloat64(renewals.WithLabelValues(s.Name(), "ok")); ok < 2 {
		t.Errorf("%v renewals counted ok", ok)
	}
	if exp := testutil.ToFloat64(certExpiry.WithLabelValues(s.Name())); time.Unix(int64(exp), 0).Before(time.Now()) {
		t.Errorf("expiry metric %v is past", exp)
	}
	fi, err := os.Stat(filepath.Join(s.CertDir, keyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept key: %v, mode %v", err, fi.Mode())
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(s.CertDir, chainFileName), filepath.Join(s.CertDir, keyFileName)); err != nil {
		t.Fatal(err)
	}

	// A restart once the token is worthless: the kept certificate connects.
	cancel()
	for len(f.ca.calls) > 0 {
		<-f.ca.calls
	}
	<-s.id.done
	restarted := certSource(t, addr, p, dir, "garbage")
	start(t, restarted, newSink())
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := f.next(t)
		if r.peer == spiffe && r.auth == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: authorization %q, certificate %q", r.auth, r.peer)
		}
	}
}

// A renewal that fails is retried; the certificate keeps the stream going
// while it is valid, and a new one comes once the CA answers again.
func TestCertificateRenewalRetried(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	f := newFake()
	f.ca = newFakeCA(p)
	addr, _ := serve(t, f, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(p.optionalClientTLS(t))))
	s := certSource(t, addr, p, dir, fakeJWT(t, "system:serviceaccount:vm-ns:vm-sa", time.Hour))
	s.CertLifetime = 12 * time.Second // renewed after 6 s, retried within 5 s: before it expires
	start(t, s, newSink())
	f.ca.next(t, 5*time.Second)
	f.ca.fail.Store(true)
	if c := f.ca.next(t, 10*time.Second); c.peer == "" {
		t.Fatalf("renewal without the certificate: %+v", c)
	}
	f.ca.fail.Store(false)
	if c := f.ca.next(t, 10*time.Second); c.peer == "" { // the retry, after the 5 s backoff at most
		t.Fatalf("retry without the certificate: %+v", c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(renewals.WithLabelValues(s.Name(), "ok")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the retried renewal did not count")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if errs := testutil.ToFloat64(renewals.WithLabelValues(s.Name(), "error")); errs < 1 || s.id.certificate() == nil {
		t.Fatalf("%v failed renewals, certificate %v", errs, s.id.certificate() != nil)
	}
}

// Without a certificate to use, a token that cannot get one stops CoreDNS
// at start, naming the file.
func TestCertificateStartErrors(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	tests := []struct {
		name, token, want string
	}{
		{"garbage", "garbage", "not a JWT"},
		{"expired", fakeJWT(t, "system:serviceaccount:vm-ns:vm-sa", -time.Minute), "the token expired at"},
		{"not a service account", fakeJWT(t, "admin", time.Hour), `subject "admin" is not system:serviceaccount`},
		{"missing", "", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := certSource(t, freeAddr(t), p, t.TempDir(), tc.token)
			if tc.token == "" {
				os.Remove(s.TokenFile)
			}
			err := s.Start(context.Background(), newSink())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), s.TokenFile) {
				t.Fatalf("error %v, want one naming %s and containing %q", err, s.TokenFile, tc.want)
			}
		})
	}
	// A valid kept certificate needs no token.
	s := certSource(t, freeAddr(t), p, t.TempDir(), "garbage")
	os.MkdirAll(s.CertDir, 0o700)
	os.Rename(p.clientCert, filepath.Join(s.CertDir, chainFileName))
	os.Rename(p.clientKey, filepath.Join(s.CertDir, keyFileName))
	start(t, s, newSink())
}

// A token rotated to another service account replaces the certificate at
// the next connection; a token that is garbage leaves it in use.
func TestCertificateFollowsToken(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	f := newFake()
	f.ca = newFakeCA(p)
	addr, _ := serve(t, f, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(p.optionalClientTLS(t))))
	s := certSource(t, addr, p, dir, fakeJWT(t, "system:serviceaccount:other-ns:vm-sa", time.Hour))
	s.CertLifetime = time.Hour
	start(t, s, newSink())
	if c := f.ca.next(t, 5*time.Second); c.san != "spiffe://cluster.local/ns/other-ns/sa/vm-sa" {
		t.Fatalf("first certificate for %s", c.san)
	}
	for deadline := time.Now().Add(5 * time.Second); s.id.certificate() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no certificate")
		}
	}
	streamWith := func(what, peer string) {
		t.Helper()
		f.kick <- struct{}{}
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := f.next(t)
			if r.peer == peer && (peer != "" || r.auth != "") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: stream with authorization %q, certificate %q", what, r.auth, r.peer)
			}
		}
	}
	f.next(t)
	os.WriteFile(s.TokenFile, []byte("garbage"), 0o600)
	streamWith("garbage token", "spiffe://cluster.local/ns/other-ns/sa/vm-sa")

	os.WriteFile(s.TokenFile, []byte(fakeJWT(t, "system:serviceaccount:vm-ns:vm-sa", time.Hour)), 0o600)
	streamWith("rotated token", "") // the token, until the new certificate comes
	if c := f.ca.next(t, 5*time.Second); c.san != "spiffe://cluster.local/ns/vm-ns/sa/vm-sa" || c.auth == "" {
		t.Fatalf("new certificate asked for with %+v", c)
	}
	for deadline := time.Now().Add(5 * time.Second); s.id.certificate() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no new certificate")
		}
	}
	streamWith("new certificate", "spiffe://cluster.local/ns/vm-ns/sa/vm-sa")
}
