package harness

import "github.com/miekg/dns"

// ServeDNS serves h on addr over UDP and TCP until the test ends.
func ServeDNS(t TB, addr string, h dns.Handler) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		started := make(chan error, 1)
		s := &dns.Server{Addr: addr, Net: network, Handler: h, NotifyStartedFunc: func() { started <- nil }}
		go func() {
			if err := s.ListenAndServe(); err != nil {
				started <- err
			}
		}()
		if err := <-started; err != nil {
			t.Fatalf("harness: DNS server %s/%s: %v", addr, network, err)
		}
		t.Cleanup(func() { s.Shutdown() })
	}
}
