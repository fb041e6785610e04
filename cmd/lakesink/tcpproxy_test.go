package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpProxy is a loopback TCP proxy in front of one target (a Kafka broker, an S3
// server). It injects three faults and counts each, so a test can assert that its
// fault happened:
//
//   - down (setDown): every open connection is cut and new ones are refused
//     (accepted, then closed at once) until it is lifted;
//   - hold (setHold): a black hole: connections stay open, new ones are accepted,
//     but no byte goes through either way until it is lifted (then what was held
//     is delivered, as TCP retransmission would after a network outage);
//   - silence (silenceOpen): the connections open now go silent for good (no byte
//     through either way, never closed, as a connection whose path died without
//     a reset) while new ones pass; combined with a hold, it ends the hold for
//     new connections only;
//   - a Kafka request filter (setKafkaFilter, on a proxy made with kafka=true,
//     which reads the Kafka framing of both directions): a request of a chosen
//     API key cuts the connection before it reaches the broker, or reaches the
//     broker and has its response lost (the connection cut when the response comes).
type tcpProxy struct {
	ln     net.Listener
	kafka  bool // parse Kafka request and response frames
	target string
	mu     sync.Mutex
	down   bool
	hold   chan struct{} // non-nil while holding; closed when the hold is lifted
	closed chan struct{}
	conns  map[net.Conn]struct{}
	silent map[net.Conn]bool // connections silenced for good (silenceOpen)
	filter atomic.Pointer[func(apiKey int16) kafkaAction]
	wg     sync.WaitGroup
	// accepted counts connections proxied, refused those closed at once while down,
	// cut those closed by Down, held the transfers stopped by a hold.
	// silenced counts the transfers stopped on a silenced connection.
	accepted, refused, cut, held, silenced atomic.Int64
	// kafkaCut counts requests whose connection was cut before the broker got them,
	// kafkaLost responses cut on their way back (the broker applied the request).
	kafkaCut, kafkaLost atomic.Int64
}

// kafkaAction is what the proxy does with one Kafka request.
type kafkaAction int

const (
	kafkaPass kafkaAction = iota
	// kafkaCutRequest closes the connection instead of forwarding the request.
	kafkaCutRequest
	// kafkaLoseResponse forwards the request and closes the connection when its
	// response comes back, instead of delivering it.
	kafkaLoseResponse
)

// newTCPProxy listens on a free loopback port; it proxies to target once
// setTarget is called (the target can be chosen after the proxy's port). With
// kafka set it reads the Kafka framing (needed by setKafkaFilter).
func newTCPProxy(t testing.TB, kafka bool) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, kafka: kafka, conns: map[net.Conn]struct{}{}, silent: map[net.Conn]bool{}, closed: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) setTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// setKafkaFilter chooses, per request API key, what happens to each request
// (nil: everything passes). The proxy must have been made with kafka=true.
func (p *tcpProxy) setKafkaFilter(f func(apiKey int16) kafkaAction) {
	if !p.kafka {
		panic("tcpProxy: a Kafka filter on a proxy that does not read Kafka frames")
	}
	if f == nil {
		p.filter.Store(nil)
		return
	}
	p.filter.Store(&f)
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, target := p.down, p.target
		p.mu.Unlock()
		if down || target == "" {
			p.refused.Add(1)
			c.Close()
			continue
		}
		u, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			p.refused.Add(1)
			c.Close()
			u.Close()
			continue
		}
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.accepted.Add(1)
		p.wg.Add(2)
		if p.kafka {
			doomed := &sync.Map{} // correlation ids whose response is to be lost
			go p.pipe(u, c, func(r *bufio.Reader, w net.Conn) error { return p.kafkaRequest(r, w, doomed) })
			go p.pipe(c, u, func(r *bufio.Reader, w net.Conn) error { return p.kafkaResponse(r, w, doomed) })
			continue
		}
		go p.pipe(u, c, p.chunk)
		go p.pipe(c, u, p.chunk)
	}
}

// pipe moves src's bytes to dst with step until either side ends, then closes both.
func (p *tcpProxy) pipe(dst, src net.Conn, step func(*bufio.Reader, net.Conn) error) {
	defer p.wg.Done()
	r := bufio.NewReaderSize(src, 64<<10)
	for step(r, dst) == nil {
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// chunk forwards what is buffered (at least one byte), after any hold.
func (p *tcpProxy) chunk(r *bufio.Reader, w net.Conn) error {
	if _, err := r.Peek(1); err != nil {
		return err
	}
	b, _ := r.Peek(r.Buffered())
	if err := p.gate(w); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	_, _ = r.Discard(len(b))
	return nil
}

// kafkaFrame reads one Kafka frame: a 4-byte big-endian size, then that many bytes.
func kafkaFrame(r *bufio.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 256<<20 {
		return nil, fmt.Errorf("kafka frame of %d bytes", n)
	}
	b := make([]byte, 4+n)
	copy(b, size[:])
	if _, err := io.ReadFull(r, b[4:]); err != nil {
		return nil, err
	}
	return b, nil
}

// kafkaRequest forwards one request frame (api_key int16, api_version int16,
// correlation_id int32 after the size), or cuts the connection, as the filter says.
func (p *tcpProxy) kafkaRequest(r *bufio.Reader, w net.Conn, doomed *sync.Map) error {
	b, err := kafkaFrame(r)
	if err != nil {
		return err
	}
	if len(b) < 12 {
		return fmt.Errorf("kafka request frame of %d bytes", len(b))
	}
	key, corr := int16(binary.BigEndian.Uint16(b[4:6])), int32(binary.BigEndian.Uint32(b[8:12]))
	act := kafkaPass
	if f := p.filter.Load(); f != nil {
		act = (*f)(key)
	}
	switch act {
	case kafkaCutRequest:
		p.kafkaCut.Add(1)
		return fmt.Errorf("kafka request key %d cut", key)
	case kafkaLoseResponse:
		doomed.Store(corr, true)
	}
	if err := p.gate(w); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// kafkaResponse forwards one response frame (correlation_id int32 after the size),
// unless its request was doomed: then the connection is cut instead.
func (p *tcpProxy) kafkaResponse(r *bufio.Reader, w net.Conn, doomed *sync.Map) error {
	b, err := kafkaFrame(r)
	if err != nil {
		return err
	}
	if _, ok := doomed.LoadAndDelete(int32(binary.BigEndian.Uint32(b[4:8]))); ok {
		p.kafkaLost.Add(1)
		return fmt.Errorf("kafka response lost")
	}
	if err := p.gate(w); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// gate waits out a hold (counting the transfer it stopped) before a write to w;
// if w is silenced, it waits until the proxy closes.
func (p *tcpProxy) gate(w net.Conn) error {
	counted := false
	for {
		p.mu.Lock()
		h, silent := p.hold, p.silent[w]
		p.mu.Unlock()
		if silent {
			p.silenced.Add(1)
			<-p.closed
			return net.ErrClosed
		}
		if h == nil {
			return nil
		}
		if !counted {
			p.held.Add(1)
			counted = true
		}
		select {
		case <-h: // lifted; w may have been silenced meanwhile
		case <-p.closed:
			return net.ErrClosed
		}
	}
}

// silenceOpen silences the connections open now for good (both sides of each)
// and lifts any hold for the others; it returns how many it silenced.
func (p *tcpProxy) silenceOpen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		p.silent[c] = true
		n++
	}
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
	return n / 2
}

// setDown cuts (down=true) or restores the path to the target.
func (p *tcpProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
			p.cut.Add(1)
		}
	}
}

// setHold starts (hold=true) or lifts a black hole.
func (p *tcpProxy) setHold(hold bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case hold && p.hold == nil:
		p.hold = make(chan struct{})
	case !hold && p.hold != nil:
		close(p.hold)
		p.hold = nil
	}
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	select {
	case <-p.closed:
	default:
		close(p.closed)
	}
	p.mu.Unlock()
	p.setDown(true)
	p.wg.Wait()
}
