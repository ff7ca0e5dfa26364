package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/meshdns/meshdns/test/harness"
)

const (
	floodSockets = 32
	floodBatch   = 64 // messages per sendmmsg and recvmmsg
	// capacityFor is how long the server is sent all it can take to
	// measure what it answers on its one CPU.
	capacityFor = time.Second
	// floodFactor is the flood's rate over that capacity.
	floodFactor = 3
)

// blastResult is what a flood got back. Only totals: at several times
// what the server can answer, the load's CPU goes into sending, not into
// keeping every query.
type blastResult struct {
	rate                            int // asked for
	sent, answered, servfail, wrong int64
	elapsed                         time.Duration // sending
	stopped                         time.Time     // the last query left
}

func (b blastResult) sendRate() float64   { return float64(b.sent) / b.elapsed.Seconds() }
func (b blastResult) answerRate() float64 { return float64(b.answered) / b.elapsed.Seconds() }

func (b blastResult) String() string {
	return fmt.Sprintf("%d sent at %.0f/s, %d answered right, %d unanswered, %d SERVFAIL, %d wrong",
		b.sent, b.sendRate(), b.answered, b.sent-b.answered-b.servfail-b.wrong, b.servfail, b.wrong)
}

// blast sends p at rate queries a second for d, over floodSockets
// sockets, floodBatch at a time, and counts the replies that arrive within
// the reply deadline after the last query; stopped, if not nil, is told
// when the last query left. p must want one IPv4 address.
func blast(dial harness.DialFunc, addr string, p harness.Probe, rate int, d time.Duration, stopped chan<- time.Time) (blastResult, error) {
	want := net.ParseIP(p.Want).To4()
	if want == nil {
		return blastResult{}, fmt.Errorf("flood: %s wants %q, not one IPv4 address", p.Name, p.Want)
	}
	q := new(dns.Msg)
	q.SetQuestion(p.Name, p.Qtype)
	packed, err := q.Pack()
	if err != nil {
		return blastResult{}, err
	}
	var conns []*ipv4.PacketConn
	var raw []net.Conn
	defer func() {
		for _, c := range raw {
			c.Close()
		}
	}()
	for range floodSockets {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := dial(ctx, "udp", addr)
		cancel()
		if err != nil {
			return blastResult{}, err
		}
		raw = append(raw, c)
		uc, ok := c.(*net.UDPConn)
		if !ok {
			return blastResult{}, fmt.Errorf("flood: a %T is no UDP socket", c)
		}
		conns = append(conns, ipv4.NewPacketConn(uc))
	}

	var answered, servfail, wrong atomic.Int64
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Go(func() {
			msgs := make([]ipv4.Message, floodBatch)
			for i := range msgs {
				msgs[i].Buffers = [][]byte{make([]byte, 512)}
			}
			for {
				n, err := c.ReadBatch(msgs, 0)
				if err != nil {
					if isClosed(err) {
						return
					}
					continue // an ICMP error of an earlier query
				}
				for _, m := range msgs[:n] {
					switch b := m.Buffers[0][:m.N]; {
					case len(b) < 12:
						wrong.Add(1)
					case b[3]&0x0f == dns.RcodeServerFailure:
						servfail.Add(1)
					case b[3]&0x0f == dns.RcodeSuccess && b[6] == 0 && b[7] == 1 && string(b[len(b)-4:]) == string(want):
						answered.Add(1)
					default:
						wrong.Add(1)
					}
				}
			}
		})
	}

	res := blastResult{rate: rate}
	msgs := make([]ipv4.Message, floodBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{append([]byte(nil), packed...)}
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	begin := time.Now()
	var id uint16
	for k := 0; ; k++ {
		since := time.Since(begin)
		if since >= d {
			break
		}
		due := int64(since.Seconds() * float64(rate))
		if res.sent >= due {
			<-tick.C
			continue
		}
		n := int(min(due-res.sent, floodBatch))
		for i := range n {
			b := msgs[i].Buffers[0]
			b[0], b[1] = byte(id>>8), byte(id)
			id++
		}
		// An error is the socket's ICMP error of an earlier query: the
		// next socket goes on.
		sent, _ := conns[k%len(conns)].WriteBatch(msgs[:n], 0)
		res.sent += int64(sent)
	}
	res.stopped = time.Now()
	res.elapsed = res.stopped.Sub(begin)
	if stopped != nil {
		stopped <- res.stopped
	}
	time.Sleep(harness.ReplyDeadline)
	for _, c := range raw {
		c.Close()
	}
	raw = nil
	readers.Wait()
	res.answered, res.servfail, res.wrong = answered.Load(), servfail.Load(), wrong.Load()
	return res, nil
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// capacity is how many queries for p a second the server answers on its
// CPU: a blast of more than it can take, for a moment, with the replies it
// wrote (its own count: the load's CPU, busy sending, drops replies it
// cannot read) divided by the share of its CPU it used then.
func capacity(s *server, p harness.Probe) (float64, blastResult, error) {
	const responses = "coredns_dns_responses_total"
	cpu0 := cpuTime(s.pid())
	n0, err := harness.Metric(s.metrics, responses)
	if err != nil {
		return 0, blastResult{}, err
	}
	res, err := blast(s.dial(), s.addr, p, 2_000_000, capacityFor, nil)
	if err != nil {
		return 0, res, err
	}
	n1, err := harness.Metric(s.metrics, responses)
	if err != nil {
		return 0, res, err
	}
	busy := (cpuTime(s.pid()) - cpu0).Seconds()
	return (n1 - n0) / max(busy, 0.05), res, nil
}

// injectFlood measures what the server answers on its CPU, floods it with
// floodFactor times that, and lets the normal load go on alone after.
func injectFlood(l *lab, ss []*server) injection {
	s := ss[0]
	p := meshProbes()[0]
	inj := injection{began: time.Now()}
	capRate, probe, err := capacity(s, p)
	if err != nil {
		l.t.Fatalf("flood: %v", err)
	}
	rate := int(floodFactor * capRate)
	inj.notes = append(inj.notes, fmt.Sprintf("capacity %.0f queries/s (the server's replies per second of its CPU through %s of %s)", capRate, capacityFor, probe))
	stopped := make(chan time.Time, 1)
	done := make(chan blastResult, 1)
	go func() {
		res, err := blast(s.dial(), s.addr, p, rate, l.prof.FloodFor, stopped)
		if err != nil {
			l.t.Logf("flood: %v", err)
			stopped <- time.Now()
		}
		done <- res
	}()
	inj.fresh = []harness.Probe{l.createFresh()}
	inj.returned = <-stopped
	inj.cleanFrom = inj.returned.Add(time.Second)
	// The flood's replies are counted until its deadline passes, while
	// recovery is polled.
	inj.flood = func() blastResult {
		res := <-done
		done <- res
		return res
	}
	inj.floodRate, inj.capacity = rate, capRate
	return inj
}
