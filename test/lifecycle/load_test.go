package lifecycle

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

// probe is a query of the load and the answer it must get, as
// answerString writes it.
type probe struct {
	name  string
	qtype uint16
	want  string
}

// deadline is how long a query may wait for its reply: later is lost, as
// for a stub resolver that has given up.
const deadline = 2 * time.Second

// sent is one query: when it left and what came back.
type sent struct {
	at      time.Time
	probe   int
	err     error         // the send failed
	replied time.Duration // after at; 0 without a reply
	rcode   int
	answer  string
}

// socket is one connected UDP socket of the load, with the queries that
// wait for a reply on it by ID.
type socket struct {
	conn    net.Conn
	mu      sync.Mutex
	nextID  uint16
	pending map[uint16]*sent
	refused int // ICMP port unreachable: nothing listened
}

// load sends rate queries a second, round-robin over probes and sockets,
// each with its own ID and deadline, until stop.
type load struct {
	probes  []probe
	rate    int
	sockets []*socket
	packed  [][]byte
	start   time.Time

	mu      sync.Mutex
	queries []*sent
	stall   time.Duration // the longest the sender waited for its ticker; read after stop

	stopping chan struct{}
	once     sync.Once
	sender   sync.WaitGroup
	readers  sync.WaitGroup
}

// startLoad dials conns sockets with dial and starts sending.
func startLoad(dial func(context.Context, string, string) (net.Conn, error), addr string, conns, rate int, probes []probe) (*load, error) {
	l := &load{probes: probes, rate: rate, stopping: make(chan struct{})}
	for _, p := range probes {
		m := new(dns.Msg)
		m.SetQuestion(p.name, p.qtype)
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
		l.sockets = append(l.sockets, &socket{conn: c, pending: map[uint16]*sent{}})
	}
	for _, s := range l.sockets {
		l.readers.Add(1)
		go l.read(s)
	}
	l.start = time.Now()
	l.sender.Add(1)
	go l.send()
	return l, nil
}

// send keeps the count of queries sent at rate × the time since start,
// checked every millisecond. After a stall of this process it catches up at
// no more than twice the rate: a burst of what a stall held back would
// overflow the server's socket buffer, which is not what a steady load
// tests.
func (l *load) send() {
	defer l.sender.Done()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	perTick := max(1, 2*l.rate/1000)
	n := 0
	last := l.start
	buf := make([]byte, 512)
	for {
		select {
		case <-l.stopping:
			return
		case now := <-tick.C:
			l.stall = max(l.stall, now.Sub(last))
			last = now
			due := int(now.Sub(l.start).Seconds() * float64(l.rate))
			for burst := 0; n < due && burst < perTick; n, burst = n+1, burst+1 {
				s := l.sockets[n%len(l.sockets)]
				q := &sent{probe: n % len(l.probes)}
				b := buf[:len(l.packed[q.probe])]
				copy(b, l.packed[q.probe])
				s.mu.Lock()
				id := s.nextID
				s.nextID++
				b[0], b[1] = byte(id>>8), byte(id)
				q.at = time.Now()
				s.pending[id] = q
				s.mu.Unlock()
				if _, err := s.conn.Write(b); err != nil {
					s.mu.Lock()
					delete(s.pending, id)
					q.err = err
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
func (l *load) read(s *socket) {
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
		if ok && m.Question[0].Name == l.probes[q.probe].name && m.Question[0].Qtype == l.probes[q.probe].qtype {
			delete(s.pending, m.Id)
			q.replied = now.Sub(q.at)
			q.rcode = m.Rcode
			q.answer = answerString(m)
		}
		s.mu.Unlock()
	}
}

func (l *load) closeSockets() {
	for _, s := range l.sockets {
		s.conn.Close()
	}
}

// stop stops sending, waits out the deadline of the last queries, and
// returns every query sent. Only the first call waits.
func (l *load) stop() []*sent {
	l.once.Do(func() {
		close(l.stopping)
		l.sender.Wait()
		time.Sleep(deadline)
		l.closeSockets()
		l.readers.Wait()
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queries
}

// refused counts the ICMP errors the sockets got.
func (l *load) refused() int {
	n := 0
	for _, s := range l.sockets {
		s.mu.Lock()
		n += s.refused
		s.mu.Unlock()
	}
	return n
}

// tally is what happened to the queries sent in a span of time.
type tally struct {
	sent, ok, lost, servfail, wrong int
	slowest                         time.Duration // the longest a reply took
	// firstLost and lastLost are when the first and the last query that
	// got no reply in time were sent.
	firstLost, lastLost time.Time
	examples            []string // a few wrong answers
}

// count tallies the queries sent in [from, to).
func count(queries []*sent, probes []probe, from, to time.Time) tally {
	var t tally
	for _, q := range queries {
		if q.at.Before(from) || !q.at.Before(to) {
			continue
		}
		t.sent++
		if q.err == nil && q.replied <= deadline {
			t.slowest = max(t.slowest, q.replied)
		}
		switch {
		case q.err != nil || q.replied == 0 || q.replied > deadline:
			t.lost++
			if t.firstLost.IsZero() {
				t.firstLost = q.at
			}
			t.lastLost = q.at
		case q.rcode == dns.RcodeServerFailure:
			t.servfail++
		case q.answer != probes[q.probe].want:
			t.wrong++
			if len(t.examples) < 5 {
				t.examples = append(t.examples, fmt.Sprintf("%s: %q, want %q", probes[q.probe].name, q.answer, probes[q.probe].want))
			}
		default:
			t.ok++
		}
	}
	return t
}

// gap is how long queries went unanswered: from the first lost one to the
// last, plus one interval between queries.
func (t tally) gap(rate int) time.Duration {
	if t.lost == 0 {
		return 0
	}
	return t.lastLost.Sub(t.firstLost) + time.Second/time.Duration(rate)
}

// span says when, after from, the lost queries were sent.
func (t tally) span(from time.Time) string {
	if t.lost == 0 {
		return ""
	}
	return fmt.Sprintf(" (lost ones sent from +%s to +%s)", t.firstLost.Sub(from).Round(time.Millisecond), t.lastLost.Sub(from).Round(time.Millisecond))
}

func (t tally) String() string {
	s := fmt.Sprintf("%d sent, %d answered right, %d lost, %d SERVFAIL, %d wrong, slowest reply %s",
		t.sent, t.ok, t.lost, t.servfail, t.wrong, t.slowest.Round(time.Millisecond))
	if len(t.examples) > 0 {
		s += " (" + strings.Join(t.examples, "; ") + ")"
	}
	return s
}

// answerString is a reply as a comparable string: the rcode when it is not
// NOERROR, else the sorted A records, or NODATA.
func answerString(m *dns.Msg) string {
	if m.Rcode != dns.RcodeSuccess {
		return dns.RcodeToString[m.Rcode]
	}
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	if len(out) == 0 {
		return "NODATA"
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
