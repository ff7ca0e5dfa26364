package main

// The server started on its CPU and the control plane pinned to the other
// (as test/bench/kubernetes does them), the wait for the ready plugin, and
// the NXDOMAIN upstream.

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// startPinned runs bin -conf conf on serverCPU with GOMAXPROCS=1.
func startPinned(bin, conf, logPath string) (*harness.Process, error) {
	return harness.StartProcess("coredns", []string{"taskset", "-c", strconv.Itoa(serverCPU), bin, "-conf", conf},
		[]string{"GOMAXPROCS=1"}, logPath)
}

// waitReady polls the ready plugin's URL until it answers 200 OK.
func waitReady(p *harness.Process, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if p.Exited() {
			return fmt.Errorf("coredns exited: %v", p.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s; last answer from %s: %s", limit, url, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nxdomain is the upstream of the forward plugin: NXDOMAIN for every name,
// so a ServiceEntry host meshdns leaves to upstream DNS (no address yet)
// answers NXDOMAIN at once and never an address.
type nxdomain struct{ queries atomic.Int64 }

func (h *nxdomain) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	h.queries.Add(1)
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeNameError)
	_ = w.WriteMsg(m)
}
