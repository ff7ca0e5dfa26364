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
// same Corefile forwarding elsewhere starts. The port is picked free for UDP
// and TCP, and picked again if something else takes it before the server
// binds it (other tests' outgoing connections use the same port range).
func TestLoopRefused(t *testing.T) {
	for attempt := 1; ; attempt++ {
		err := loopRefused(t, freeUDPAndTCPPort(t))
		if err == nil {
			return
		}
		// CoreDNS does not wrap the listener's error: match its text.
		if !strings.Contains(err.Error(), "address already in use") || attempt == 5 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; another port", attempt, err)
	}
}

func loopRefused(t *testing.T, port int) error {
	corefile := func(upstream string) string {
		return fmt.Sprintf(".:%d {\nbind 127.0.0.1\nmeshdns {\nfile testdata/mesh.json\nfallthrough\n}\nforward . %s\n}\n", port, upstream)
	}
	i, err := coretest.CoreDNSServer(corefile(fmt.Sprintf("127.0.0.1:%d", port)))
	if err == nil {
		i.Stop()
		return fmt.Errorf("a forward to itself started")
	}
	if !strings.Contains(err.Error(), "is this server") {
		return fmt.Errorf("a forward to itself: %w", err)
	}
	i, err = coretest.CoreDNSServer(corefile("127.0.0.1:1"))
	if err != nil {
		return fmt.Errorf("a forward elsewhere: %w", err)
	}
	i.Stop()
	return nil
}

// freeUDPAndTCPPort returns a port that was free for both UDP and TCP on
// 127.0.0.1 a moment ago.
func freeUDPAndTCPPort(t *testing.T) int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
}
