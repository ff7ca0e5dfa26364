package meshdns

import (
	"fmt"
	"net"
	"strings"
	"testing"

	coretest "github.com/coredns/coredns/test"
)

func TestPointsAt(t *testing.T) {
	tests := []struct {
		addr  string
		hosts []string
		port  string
		want  bool
	}{
		{"127.0.0.1:53", []string{"127.0.0.1"}, "53", true},
		{"127.0.0.1:53", []string{""}, "53", true},
		{"127.0.0.53:53", []string{"0.0.0.0"}, "53", true},
		{"[::1]:53", []string{"::"}, "53", true},
		{"127.0.0.1:5353", []string{"127.0.0.1"}, "53", false},
		{"127.0.0.2:53", []string{"127.0.0.1"}, "53", false},
		{"192.0.2.1:53", []string{""}, "53", false},
		{"[::ffff:127.0.0.1]:53", []string{"127.0.0.1"}, "53", true},
	}
	for _, tc := range tests {
		if got := pointsAt(tc.addr, tc.hosts, tc.port); got != tc.want {
			t.Errorf("pointsAt(%s, %q, %s) = %v, want %v", tc.addr, tc.hosts, tc.port, got, tc.want)
		}
	}
}

// A forward back to the server itself stops startup with a clear error; the
// same Corefile forwarding elsewhere starts.
func TestLoopRefused(t *testing.T) {
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	corefile := func(upstream string) string {
		return fmt.Sprintf(".:%d {\nbind 127.0.0.1\nmeshdns {\nfile testdata/mesh.json\nfallthrough\n}\nforward . %s\n}\n", port, upstream)
	}
	i, err := coretest.CoreDNSServer(corefile(fmt.Sprintf("127.0.0.1:%d", port)))
	if err == nil {
		i.Stop()
		t.Fatal("a forward to itself started")
	}
	if !strings.Contains(err.Error(), "is this server") {
		t.Fatalf("error %v", err)
	}
	i, err = coretest.CoreDNSServer(corefile("127.0.0.1:1"))
	if err != nil {
		t.Fatalf("a forward elsewhere: %v", err)
	}
	i.Stop()
}
