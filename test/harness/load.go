package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// A fixed-rate UDP load: the tests and the chaos program send it to a
// server and count, per span of time, what came back.

// ReplyDeadline is how long a query of a Load may wait for its reply:
// later is lost, as for a stub resolver that has given up.
const ReplyDeadline = 2 * time.Second

// Probe is a query of a Load and the answer it must get, as Answer writes
// it (the rcode when it is not NOERROR, else the sorted addresses, or
// NODATA).
type Probe struct {
	Name  string
	Qtype uint16
	Want  string
}

// Query is one query of a Load: when it left and what came back.
type Query struct {
	At      time.Time
	Probe   int           // index into the Load's probes
	Err     error         // the send failed
	Replied time.Duration // after At; 0 without a reply
	Rcode   int
	Answer  string
}

// DialFunc makes a socket, as net.Dialer.DialContext does (or VM.DialContext,
// inside a VM).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// loadSocket is one connected UDP socket of a Load, with the queries that
// wait for a reply on it by ID.
type loadSocket struct {
	conn    net.Conn
	mu      sync.Mutex
	nextID  uint16
	pending map[uint16]*Query
	refused int // ICMP port unreachable: nothing listened
}

// Load sends a fixed number of queries a second, round-robin over its
// probes and sockets, each with its own ID and deadline, until Stop.
type Load struct {
	// Start is when the first query was due.
	Start time.Time

	probes  []Probe
	rate    int
	sockets []*loadSocket
	packed  [][]byte

	mu      sync.Mutex
	queries []*Query
	stall   time.Duration // the longest the sender waited for its ticker

	stopping chan struct{}
	once     sync.Once
	sender   sync.WaitGroup
	readers  sync.WaitGroup
}

// StartLoad dials conns UDP sockets to addr with dial and starts sending
// rate queries a second.
func StartLoad(dial DialFunc, addr string, conns, rate int, probes []Probe) (*Load, error) {
	if rate < 1 || conns < 1 || len(probes) == 0 {
		return nil, fmt.Errorf("load: rate %d, %d sockets, %d probes: all must be positive", rate, conns, len(probes))
	}
	l := &Load{probes: probes, rate: rate, stopping: make(chan struct{})}
	for _, p := range probes {
		m := new(dns.Msg)
		m.SetQuestion(p.Name, p.Qtype)
		b, err := m.Pack()
		if err != nil {
			return nil, err
		}
		l.packed = append(l.packed, b)
	}
	for range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := dial(ctx, "udp", addr)
		cancel()
		if err != nil {
			l.closeSockets()
			return nil, err
		}
		l.sockets = append(l.sockets, &loadSocket{conn: c, pending: map[uint16]*Query{}})
	}
	for _, s := range l.sockets {
		l.readers.Add(1)
		go l.read(s)
	}
	l.Start = time.Now()
	l.sender.Add(1)
	go l.send()
	return l, nil
}

// send keeps the count of queries sent at rate × the time since Start,
// checked every millisecond. After a stall of this process it catches up at
// no more than twice the rate: a burst of what a stall held back would
// overflow the server's socket buffer, which is not what a steady load
// tests.
func (l *Load) send() {
	defer l.sender.Done()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	perTick := max(1, 2*l.rate/1000)
	n := 0
	last := l.Start
	buf := make([]byte, 512)
	for {
		select {
		case <-l.stopping:
			return
		case now := <-tick.C:
			l.mu.Lock()
			l.stall = max(l.stall, now.Sub(last))
			l.mu.Unlock()
			last = now
			due := int(now.Sub(l.Start).Seconds() * float64(l.rate))
			for burst := 0; n < due && burst < perTick; n, burst = n+1, burst+1 {
				s := l.sockets[n%len(l.sockets)]
				q := &Query{Probe: n % len(l.probes)}
				b := buf[:len(l.packed[q.Probe])]
				copy(b, l.packed[q.Probe])
				s.mu.Lock()
				id := s.nextID
				s.nextID++
				b[0], b[1] = byte(id>>8), byte(id)
				q.At = time.Now()
				s.pending[id] = q
				s.mu.Unlock()
				if _, err := s.conn.Write(b); err != nil {
					s.mu.Lock()
					delete(s.pending, id)
					q.Err = err
					s.mu.Unlock()
				}
				l.mu.Lock()
				l.queries = append(l.queries, q)
				l.mu.Unlock()
			}
		}
	}
}

// read matches replies to their queries by ID and question.
func (l *Load) read(s *loadSocket) {
	defer l.readers.Done()
	buf := make([]byte, 65535)
	for {
		n, err := s.conn.Read(buf)
		now := time.Now()
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The ICMP error of an earlier query: that query stays
			// unanswered, the socket goes on.
			s.mu.Lock()
			s.refused++
			s.mu.Unlock()
			continue
		}
		if err != nil {
			return
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || len(m.Question) != 1 {
			continue
		}
		s.mu.Lock()
		q, ok := s.pending[m.Id]
		if ok && m.Question[0].Name == l.probes[q.Probe].Name && m.Question[0].Qtype == l.probes[q.Probe].Qtype {
			delete(s.pending, m.Id)
			q.Replied = now.Sub(q.At)
			q.Rcode = m.Rcode
			q.Answer = formatAnswer(m)
		}
		s.mu.Unlock()
	}
}

func (l *Load) closeSockets() {
	for _, s := range l.sockets {
		s.conn.Close()
	}
}

// Stop stops sending, waits out the deadline of the last queries, and
// returns every query sent. Only the first call waits.
func (l *Load) Stop() []*Query {
	l.once.Do(func() {
		close(l.stopping)
		l.sender.Wait()
		time.Sleep(ReplyDeadline)
		l.closeSockets()
		l.readers.Wait()
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queries
}

// Probes are the probes the load sends.
func (l *Load) Probes() []Probe { return l.probes }

// Refused counts the ICMP errors the sockets got.
func (l *Load) Refused() int {
	n := 0
	for _, s := range l.sockets {
		s.mu.Lock()
		n += s.refused
		s.mu.Unlock()
	}
	return n
}

// Stall is the longest the sender waited for its ticker: how long this
// process was kept from sending.
func (l *Load) Stall() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stall
}

// Tally is what happened to the queries sent in a span of time.
type Tally struct {
	Sent, OK, Lost, ServFail, Wrong int
	// Refused counts REFUSED replies to probes that want another answer:
	// wrong for a name the server answers itself, the refusal of a
	// bounded path for a name it forwards.
	Refused int
	// Slowest and P99 are the longest and the 99th percentile of the
	// replies' round trips, lost queries left out.
	Slowest, P99 time.Duration
	// FirstLost and LastLost are when the first and the last query that
	// got no reply in time were sent.
	FirstLost, LastLost time.Time
	Examples            []string // a few wrong answers
}

// Count tallies the queries sent in [from, to).
func Count(queries []*Query, probes []Probe, from, to time.Time) Tally {
	var t Tally
	var rtts []time.Duration
	for _, q := range queries {
		if q.At.Before(from) || !q.At.Before(to) {
			continue
		}
		t.Sent++
		if q.Err == nil && q.Replied > 0 && q.Replied <= ReplyDeadline {
			rtts = append(rtts, q.Replied)
		}
		want := probes[q.Probe].Want
		switch {
		case q.Err != nil || q.Replied == 0 || q.Replied > ReplyDeadline:
			t.Lost++
			if t.FirstLost.IsZero() {
				t.FirstLost = q.At
			}
			t.LastLost = q.At
		case q.Answer == want:
			t.OK++
		case q.Rcode == dns.RcodeServerFailure:
			t.ServFail++
		case q.Rcode == dns.RcodeRefused:
			t.Refused++
		default:
			t.Wrong++
			if len(t.Examples) < 5 {
				t.Examples = append(t.Examples, fmt.Sprintf("%s: %q, want %q", probes[q.Probe].Name, q.Answer, want))
			}
		}
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		t.Slowest = rtts[len(rtts)-1]
		t.P99 = rtts[(len(rtts)*99)/100]
	}
	return t
}

// Clean reports whether every query got its answer.
func (t Tally) Clean() bool { return t.OK == t.Sent }

// Gap is how long queries went unanswered: from the first lost one to the
// last, plus one interval between queries.
func (t Tally) Gap(rate int) time.Duration {
	if t.Lost == 0 {
		return 0
	}
	return t.LastLost.Sub(t.FirstLost) + time.Second/time.Duration(rate)
}

// Span says when, after from, the lost queries were sent.
func (t Tally) Span(from time.Time) string {
	if t.Lost == 0 {
		return ""
	}
	return fmt.Sprintf(" (lost ones sent from +%s to +%s)", t.FirstLost.Sub(from).Round(time.Millisecond), t.LastLost.Sub(from).Round(time.Millisecond))
}

func (t Tally) String() string {
	s := fmt.Sprintf("%d sent, %d answered right, %d lost, %d SERVFAIL, %d REFUSED, %d wrong, slowest reply %s",
		t.Sent, t.OK, t.Lost, t.ServFail, t.Refused, t.Wrong, t.Slowest.Round(time.Millisecond))
	if len(t.Examples) > 0 {
		s += " (" + strings.Join(t.Examples, "; ") + ")"
	}
	return s
}
