package meshdns

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"
	"github.com/meshdns/meshdns/plugin/table"
	"github.com/miekg/dns"
)

// The common answer, the A or AAAA records of a name the table holds, is
// written from the wire form the table precomputes for it: no reply dns.Msg,
// no Pack with its compression map, no Scrub. Every record is owned by the
// question's name, so each is a compression pointer to the question and a
// fixed-size tail; the reply is the request's header and question followed by
// those tails. Anything else takes the dns.Msg path.

const (
	headerLen = 12
	// ptrToQuestion is a compression pointer to the question's name, which
	// starts right after the header.
	ptrToQuestion = 0xc000 | headerLen
	optLen        = 11 // an OPT record without options
)

// wireBufs holds reply buffers. Replies that do not fit in the size every
// client accepts take the dns.Msg path, which truncates.
var wireBufs = sync.Pool{New: func() any { return new([dns.MinMsgSize]byte) }}

// rawWriter reports whether bytes written to w reach the client unchanged,
// as they would after WriteMsg: the server's own writer, seen directly or
// through the metrics plugin's recorder, which counts Write as it counts
// WriteMsg. Other wrappers (cache, log, dnstap, rewrite, ...) need the
// *dns.Msg.
func rawWriter(w dns.ResponseWriter) bool {
	for {
		switch x := w.(type) {
		case *request.ScrubWriter:
			return true
		case *metrics.Recorder:
			w = x.ResponseWriter
		default:
			return false
		}
	}
}

// rawRequest reports whether the reply to r can be built without a dns.Msg:
// a plain query with one IN question and no records but an OPT without
// options (which the reply echoes the way request.SizeAndDo does).
func rawRequest(r *dns.Msg) (opt *dns.OPT, ok bool) {
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 || r.Question[0].Qclass != dns.ClassINET ||
		len(r.Answer) > 0 || len(r.Ns) > 0 || len(r.Extra) > 1 {
		return nil, false
	}
	if len(r.Extra) == 0 {
		return nil, true
	}
	opt, ok = r.Extra[0].(*dns.OPT)
	return opt, ok && len(opt.Option) == 0
}

// writeRaw writes rrs, A or AAAA records in wire form without their owner
// name, each size bytes long, as the answer to r's question, and reports
// whether it did; when it did not, nothing was written.
func writeRaw(w dns.ResponseWriter, r *dns.Msg, rrs string, size int) (bool, error) {
	if len(rrs) == 0 || !rawWriter(w) {
		return false, nil
	}
	opt, ok := rawRequest(r)
	if !ok {
		return false, nil
	}
	buf := wireBufs.Get().(*[dns.MinMsgSize]byte)
	defer wireBufs.Put(buf)
	b := buf[:]

	q := r.Question[0]
	off, ok := packPlainName(b, headerLen, q.Name)
	count := len(rrs) / size
	if !ok || off+4+count*(2+size) > len(b) {
		return false, nil
	}
	binary.BigEndian.PutUint16(b[off:], q.Qtype)
	binary.BigEndian.PutUint16(b[off+2:], q.Qclass)
	off += 4

	first := off
	for i := 0; i < len(rrs); i += size {
		binary.BigEndian.PutUint16(b[off:], ptrToQuestion)
		off += 2 + copy(b[off+2:], rrs[i:i+size])
	}
	shuffleRecords(b[first:off], 2+size)

	arcount := 0
	if opt != nil {
		if off+optLen > len(b) {
			return false, nil
		}
		b[off] = 0 // the root name
		binary.BigEndian.PutUint16(b[off+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(b[off+3:], opt.Hdr.Class) // the client's UDP size
		// Extended RCODE and version 0; the DO bit and the rest of the
		// flags as the client sent them, as request.SizeAndDo leaves them.
		binary.BigEndian.PutUint32(b[off+5:], opt.Hdr.Ttl&0xff00)
		binary.BigEndian.PutUint16(b[off+9:], 0)
		off += optLen
		arcount = 1
	}

	binary.BigEndian.PutUint16(b[0:], r.Id)
	b[2] = 1<<7 | byte(r.Opcode)<<3 | 1<<2 // QR, opcode, AA
	b[3] = 0
	if r.RecursionDesired {
		// RD echoed and, as on the dns.Msg path, RA: meshdns stands in for
		// the node's resolver, with forward behind it.
		b[2] |= 1
		b[3] |= 1 << 7
	}
	if r.CheckingDisabled {
		b[3] |= 1 << 4
	}
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], uint16(count))
	binary.BigEndian.PutUint16(b[8:], 0)
	binary.BigEndian.PutUint16(b[10:], uint16(arcount))

	_, err := w.Write(b[:off])
	return true, err
}

// packPlainName writes name, in presentation form with the final dot, at
// b[off:] and returns the offset after it. Names with escapes, empty labels
// or labels over 63 bytes are left to dns.Msg (ok false); the table holds
// none of those anyway.
func packPlainName(b []byte, off int, name string) (end int, ok bool) {
	if len(name) < 2 || len(name) > 254 || name[len(name)-1] != '.' || off+len(name)+1 > len(b) {
		return 0, false
	}
	lenAt := off
	off++
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '\\':
			return 0, false
		case '.':
			n := off - lenAt - 1
			if n == 0 || n > 63 {
				return 0, false
			}
			b[lenAt] = byte(n)
			lenAt = off
			off++
		default:
			b[off] = c
			off++
		}
	}
	b[lenAt] = 0 // the root label, after the final dot
	return off, true
}

// shuffleRecords shuffles the records of size bytes each in rrs in place, as
// the dns.Msg path shuffles the records themselves.
func shuffleRecords(rrs []byte, size int) {
	n := len(rrs) / size
	var tmp [2 + table.WireAAAA]byte
	for i := n - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		if i == j {
			continue
		}
		a, b := rrs[i*size:(i+1)*size], rrs[j*size:(j+1)*size]
		copy(tmp[:], a)
		copy(a, b)
		copy(b, tmp[:size])
	}
}
