package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// stats counts the answers of one phase, from the fixed-rate load and from
// the convergence poll alike.
type stats struct {
	mu                       sync.Mutex
	sent, answered           int // by the load
	polled                   int // answers to the convergence poll
	timeouts, late           int // no answer within -query-timeout (load and poll); load answers that came after it
	skipped                  int // load queries not sent because the sender fell more than a second behind
	current, lagging, wrong  int // model.judge's verdicts (wrong: SERVFAIL not included)
	servfail                 int
	healthOnly               int // wrong answers a server that ignores health would not be wrong with (-health)
	empty                    int // judged answers without an address (NXDOMAIN, NODATA)
	hostsFinal               int // hosts answering their final set (the poll's count)
	behind, rtts             []time.Duration
	examples                 []string // the first wrong and SERVFAIL answers
	loadBegin, loadStop      time.Time
	wCurrent, wLagging       int // since the last progress line
	wWrong, wServfail, wTime int
	wBehind                  time.Duration
}

// record judges one answer and counts it.
func (s *stats) record(m *model, host int, resp *dns.Msg, sent, recv time.Time, poll bool) {
	v, behind, why := wrong, time.Duration(0), ""
	addrs := aRecords(resp)
	healthOnly := false
	switch {
	case resp.Rcode == dns.RcodeServerFailure:
	case resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError:
		why = "rcode " + dns.RcodeToString[resp.Rcode]
	case resp.Truncated:
		why = "truncated"
	default:
		v, behind, why = m.judge(host, addrs, sent, recv, false)
		if v == wrong && *health {
			blind, _, _ := m.judge(host, addrs, sent, recv, true)
			healthOnly = blind != wrong
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if poll {
		s.polled++
	} else {
		s.answered++
		s.rtts = append(s.rtts, recv.Sub(sent))
	}
	if resp.Rcode == dns.RcodeServerFailure {
		s.servfail++
		s.wServfail++
		s.example(host, recv, "SERVFAIL")
		return
	}
	if len(addrs) == 0 {
		s.empty++
	}
	switch v {
	case current:
		s.current++
		s.wCurrent++
	case lagging:
		s.lagging++
		s.wLagging++
		s.behind = append(s.behind, behind)
		s.wBehind = max(s.wBehind, behind)
	case wrong:
		s.wrong++
		s.wWrong++
		if healthOnly {
			s.healthOnly++
			why = "(wrong only with health) " + why
		}
		s.example(host, recv, why)
	}
}

func (s *stats) example(host int, recv time.Time, why string) {
	if len(s.examples) < 10 {
		s.examples = append(s.examples, fmt.Sprintf("%s at %s: %s", hostName(host), recv.Format("15:04:05.000"), why))
		log.Printf("WRONG answer: %s", s.examples[len(s.examples)-1])
	}
}

func (s *stats) count(f func(*stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// window returns the progress counters since the last call and resets them.
func (s *stats) window() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := fmt.Sprintf("%d current, %d lagging (behind up to %s), %d wrong, %d SERVFAIL, %d timeouts",
		s.wCurrent, s.wLagging, s.wBehind.Round(time.Millisecond), s.wWrong, s.wServfail, s.timeouts-s.wTime)
	s.wCurrent, s.wLagging, s.wWrong, s.wServfail, s.wTime, s.wBehind = 0, 0, 0, 0, s.timeouts, 0
	return out
}

func aRecords(resp *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			if addr, ok := netip.AddrFromSlice(a.A.To4()); ok {
				out = append(out, addr)
			}
		}
	}
	return out
}

// loader asks every host in turn over UDP at a fixed rate, from one socket:
// a sender paces the queries, a receiver matches answers to queries by ID,
// and a reaper counts the queries left unanswered.
type loader struct {
	m       *model
	st      *stats
	hosts   int
	conn    *net.UDPConn
	qps     int
	timeout time.Duration

	mu      sync.Mutex
	pending map[uint16]query
	nextID  uint16
}

type query struct {
	host int
	sent time.Time
}

// startLoad starts asking addr for hosts 0..hosts-1, round robin, at qps
// until the returned stop is called; stop returns once every query is
// answered or timed out.
func startLoad(m *model, st *stats, hosts int, addr string, qps int, timeout time.Duration) (stop func(), err error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	// Room for a second of answers while the receiver is descheduled.
	_ = conn.SetReadBuffer(4 << 20)
	l := &loader{m: m, st: st, hosts: hosts, conn: conn, qps: qps, timeout: timeout, pending: map[uint16]query{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(l.receive)
	wg.Go(func() { l.reap(ctx) })
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		l.send(ctx)
	}()
	st.count(func(s *stats) { s.loadBegin = time.Now() })
	return func() {
		cancel()
		<-sending
		st.count(func(s *stats) { s.loadStop = time.Now() })
		// Wait for the last answers, then count what is left as timeouts.
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) && l.outstanding() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		l.expire(time.Now().Add(time.Hour))
		conn.Close()
		wg.Wait()
	}, nil
}

// send paces queries at l.qps from a fixed schedule, so a late wake-up is
// made up by the next sends, but not more than a second of them.
func (l *loader) send(ctx context.Context) {
	interval := time.Second / time.Duration(l.qps)
	next := time.Now()
	buf := make([]byte, 0, 512)
	for n := 0; ; n++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		if behind := time.Since(next); behind > time.Second {
			skip := int(behind / interval)
			l.st.count(func(s *stats) { s.skipped += skip })
			next = next.Add(time.Duration(skip) * interval)
		}
		next = next.Add(interval)
		host := n % l.hosts
		msg := newQuery(host)
		l.mu.Lock()
		for {
			l.nextID++
			if _, busy := l.pending[l.nextID]; !busy {
				break
			}
		}
		msg.Id = l.nextID
		sent := time.Now()
		l.pending[msg.Id] = query{host: host, sent: sent}
		l.mu.Unlock()
		out, err := msg.PackBuffer(buf)
		if err == nil {
			_, err = l.conn.Write(out)
		}
		if err != nil {
			log.Printf("load: send: %v", err) // counted as a timeout by the reaper
		}
		l.st.count(func(s *stats) { s.sent++ })
	}
}

func (l *loader) receive() {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Printf("load: receive: %v", err)
			}
			return
		}
		recv := time.Now()
		resp := new(dns.Msg)
		if err := resp.Unpack(buf[:n]); err != nil {
			log.Printf("load: bad answer: %v", err)
			continue
		}
		l.mu.Lock()
		q, ok := l.pending[resp.Id]
		if ok && (len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, hostName(q.host))) {
			ok = false
		}
		if ok {
			delete(l.pending, resp.Id)
		}
		l.mu.Unlock()
		if !ok {
			l.st.count(func(s *stats) { s.late++ })
			continue
		}
		l.st.record(l.m, q.host, resp, q.sent, recv, false)
	}
}

func (l *loader) reap(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.expire(now)
		}
	}
}

// expire counts the queries sent more than l.timeout before now as timed out.
func (l *loader) expire(now time.Time) {
	l.mu.Lock()
	n := 0
	for id, q := range l.pending {
		if now.Sub(q.sent) > l.timeout {
			delete(l.pending, id)
			n++
		}
	}
	l.mu.Unlock()
	if n > 0 {
		l.st.count(func(s *stats) { s.timeouts += n })
	}
}

func (l *loader) outstanding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// newQuery asks for the A records of host with EDNS0 (4096 bytes, no
// options), so that a host with many WorkloadEntries is not truncated.
func newQuery(host int) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(hostName(host), dns.TypeA)
	m.SetEdns0(4096, false)
	return m
}

// converge polls the hosts of a phase while its writes go on and after: a
// host is polled once every operation of the phase touching it has returned
// (it arrives on ready; model.beginPhase), one query at a time, at most
// pollQPS a second, until it answers its final set (model.final: the
// addresses those writes left it; NXDOMAIN or NODATA for none). When every
// host has, each is asked once more; one that no longer answers its final
// set is polled again and its time taken anew. It returns, by host, the
// arrival of its first answer with its final set, or an error if some host
// still had not answered it limit after the last host arrived on ready.
// Every answer is judged and counted in st like the load's.
func converge(ctx context.Context, m *model, st *stats, addr string, hosts int, ready <-chan int, pollQPS int,
	limit time.Duration, exited func() error) ([]time.Time, error) {
	c := &dns.Client{Net: "udp", Timeout: time.Second, UDPSize: 4096}
	conn, err := c.Dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	interval := time.Second / time.Duration(pollQPS)
	okAt := make([]time.Time, hosts)
	got := map[int]string{} // the last answer of each host not answering its final set
	// ask asks host once and reports whether it answered its final set.
	ask := func(host int) bool {
		next := time.Now().Add(interval)
		defer func() { time.Sleep(time.Until(next)) }()
		msg := newQuery(host)
		sent := time.Now()
		resp, _, err := c.ExchangeWithConn(msg, conn)
		recv := time.Now()
		if err != nil {
			st.count(func(s *stats) { s.timeouts++ })
			got[host] = err.Error()
			return false
		}
		st.record(m, host, resp, sent, recv, true)
		addrs := aRecords(resp)
		slices.SortFunc(addrs, netip.Addr.Compare)
		want := m.final(host)
		rcodeOK := resp.Rcode == dns.RcodeSuccess || (resp.Rcode == dns.RcodeNameError && len(want) == 0)
		if rcodeOK && !resp.Truncated && slices.Equal(addrs, want) {
			delete(got, host)
			if okAt[host].IsZero() {
				okAt[host] = recv
				st.count(func(s *stats) { s.hostsFinal++ })
			}
			return true
		}
		got[host] = fmt.Sprintf("%s %v", dns.RcodeToString[resp.Rcode], addrs)
		return false
	}
	var todo, idle []int
	arrived := 0
	var deadline time.Time
	for {
		if err := errors.Join(ctx.Err(), exited()); err != nil {
			return okAt, err
		}
		// Hosts no operation of the phase touches should answer as before:
		// they are asked when no touched host waits, so that they do not
		// delay the touched ones, and all again at the end.
		arrive := func(h int) {
			arrived++
			if m.touchedInPhase(h) {
				todo = append(todo, h)
			} else {
				idle = append(idle, h)
			}
		}
		for more := true; more; {
			select {
			case h := <-ready:
				arrive(h)
			default:
				more = false
			}
		}
		if arrived == hosts && deadline.IsZero() {
			deadline = time.Now().Add(limit)
		}
		if len(todo) == 0 && len(idle) > 0 {
			ask(idle[0])
			idle = idle[1:]
			continue
		}
		if len(todo) == 0 && arrived < hosts {
			select {
			case h := <-ready:
				arrive(h)
			case <-ctx.Done():
			}
			continue
		}
		if len(todo) == 0 {
			// Every host has answered its final set: ask each once more.
			for h := range hosts {
				if err := ctx.Err(); err != nil {
					return okAt, err
				}
				if !ask(h) {
					okAt[h] = time.Time{}
					st.count(func(s *stats) { s.hostsFinal-- })
					todo = append(todo, h)
				}
			}
			if len(todo) == 0 {
				return okAt, nil
			}
			log.Printf("converge: %d hosts answered their final set, then no longer; polling them again", len(todo))
			continue
		}
		var left []int
		for _, h := range todo {
			if ctx.Err() != nil {
				break
			}
			if !ask(h) {
				left = append(left, h)
			}
		}
		todo = left
		if len(todo) > 0 && !deadline.IsZero() && time.Now().After(deadline) {
			h := todo[0]
			return okAt, fmt.Errorf("%d of %d hosts still not answering their final set %s after the last write; e.g. %s: want %v, got %s",
				len(todo), hosts, limit, hostName(h), m.final(h), got[h])
		}
	}
}
