package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// baseDialOptions are the options of every connection to istiod.
func (s *Source) baseDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		// A name table of 100k hosts is several MB, beyond gRPC's 4 MB default.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		// Istio's agent values: find a dead istiod without waiting for TCP.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
}

// dialOptions reads the CA, client certificate and token afresh, so a new
// connection picks up rotated files. With a workload certificate from
// istiod (identity), the stream authenticates with it alone; the token is
// sent only while there is none.
func (s *Source) dialOptions() ([]grpc.DialOption, error) {
	opts := s.baseDialOptions()
	if s.Insecure {
		return append(opts, grpc.WithTransportCredentials(insecure.NewCredentials())), nil
	}
	cfg, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	var cert *tls.Certificate
	if s.id != nil {
		cert = s.id.forToken()
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if s.TokenFile != "" && cert == nil {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenFile(s.TokenFile)))
	}
	return opts, nil
}

// tlsConfig trusts only the CA file (istiod's root, from the
// istio-ca-root-cert ConfigMap) and presents the client certificate if any.
// Without ServerName, gRPC checks the certificate for the address's host.
func (s *Source) tlsConfig() (*tls.Config, error) {
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", s.CAFile)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: s.ServerName, MinVersion: tls.VersionTLS12}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// tokenFile sends the JWT in a file as a bearer token. The file is read for
// every stream, i.e. every connection, because the kubelet or an operator
// rotates it in place.
type tokenFile string

func (f tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return nil, err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, errors.New(string(f) + ": empty token")
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (tokenFile) RequireTransportSecurity() bool { return true }
