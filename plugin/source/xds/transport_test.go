package xds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshdns/meshdns/plugin/source/xds/nds"
)

// TLS: istiod's certificate is checked against the CA file, for the
// address's host or server_name; a client certificate is presented if given.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	good := newPKI(t, dir)
	otherDir := filepath.Join(dir, "other")
	os.Mkdir(otherDir, 0o700)
	other := newPKI(t, otherDir)

	tests := []struct {
		name       string
		clientAuth bool   // the server demands a client certificate
		host       string // dialled instead of 127.0.0.1
		configure  func(s *Source)
		ok         bool
	}{
		{"CA", false, "", func(s *Source) { s.CAFile = good.ca }, true},
		{"server_name", false, "localhost", func(s *Source) { s.CAFile, s.ServerName = good.ca, "istiod.istio-system.svc" }, true},
		{"wrong name", false, "localhost", func(s *Source) { s.CAFile = good.ca }, false},
		{"wrong CA", false, "", func(s *Source) { s.CAFile = other.ca }, false},
		{"client certificate", true, "", func(s *Source) { s.CAFile, s.CertFile, s.KeyFile = good.ca, good.clientCert, good.clientKey }, true},
		{"client certificate missing", true, "", func(s *Source) { s.CAFile = good.ca }, false},
		{"client certificate from another CA", true, "", func(s *Source) {
			s.CAFile, s.CertFile, s.KeyFile = good.ca, other.clientCert, other.clientKey
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			addr, _ := serve(t, f, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(good.serverTLS(t, tt.clientAuth))))
			if tt.host != "" {
				addr = tt.host + addr[strings.LastIndex(addr, ":"):]
			}
			s := testSource(addr)
			s.Insecure = false
			tt.configure(s)
			sink := newSink()
			start(t, s, sink)
			if !tt.ok {
				// Refused: nothing reaches istiod, nothing is served.
				f.quiet(t, 300*time.Millisecond)
				if sink.isUp() || sink.nReplaces() != 0 {
					t.Error("served from a refused connection")
				}
				return
			}
			f.next(t)
			f.send(t, nameTable("v1", "n1", map[string]*nds.NameTable_NameInfo{"a.example.com": ips("240.240.0.1")}))
			if r := f.next(t); r.VersionInfo != "v1" || r.ErrorDetail != nil {
				t.Errorf("ACK %v", r.DiscoveryRequest)
			}
			eventually(t, "up", sink.isUp)
		})
	}
}

// The token is read for each connection: a rotated token is what the next
// connection sends.
func TestTokenRotation(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	f := newFake()
	addr, _ := serve(t, f, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(p.serverTLS(t, false))))
	tok := filepath.Join(dir, "token")
	first, second, third := fakeJWT(t, "system:serviceaccount:vm:vm", time.Hour), fakeJWT(t, "system:serviceaccount:vm:vm2", time.Hour), fakeJWT(t, "system:serviceaccount:vm:vm3", time.Hour)
	os.WriteFile(tok, []byte(first+"\n"), 0o600)
	s := testSource(addr)
	s.Insecure, s.CAFile, s.TokenFile = false, p.ca, tok
	start(t, s, newSink())

	if r := f.next(t); r.auth != "Bearer "+first {
		t.Fatalf("authorization %q", r.auth)
	}
	// Rotated in place, as the kubelet does (it swaps a symlink).
	os.WriteFile(tok+".new", []byte(second), 0o600)
	os.Rename(tok+".new", tok)
	f.kick <- struct{}{}
	if r := f.next(t); r.auth != "Bearer "+second || r.stream != 2 {
		t.Fatalf("after rotation: authorization %q on stream %d", r.auth, r.stream)
	}

	// An unreadable token: no stream at all, retried.
	os.Remove(tok)
	f.kick <- struct{}{}
	f.quiet(t, 200*time.Millisecond)
	os.WriteFile(tok, []byte(third), 0o600)
	if r := f.next(t); r.auth != "Bearer "+third {
		t.Fatalf("authorization %q", r.auth)
	}
}
