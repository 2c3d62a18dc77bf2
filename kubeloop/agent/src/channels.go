package main

// TCP connections carried over the stream, many at once (bridge, forwards, debug).
//
//	'T' dial: "host:port"         -> 'A' (the request id is now the channel's id) or 'E'
//	'a' accepted (agent -> client): u16 port, peer address; a connection the agent took
//	                                 for a stolen port (ids with the high bit set)
//	'd' data, 'x' end of data (half close), 'Z' reset, 'k' credit: u32 bytes
//
// Flow control: each side may have at most `window` bytes of a channel in flight, and
// the receiver returns credit ('k') as it writes them to its socket. One slow connection
// then never stalls the stream, and no buffer grows without bound.

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	window       = 2 << 20
	readSize     = 64 << 10
	maxChannels  = 2048
	agentIDBase  = 0x80000000
	dialTimeout  = 10 * time.Second
	maxDialLabel = 300
)

type channel struct {
	id   uint32
	conn net.Conn
	out  *output
	mux  *channels

	mu      sync.Mutex
	cond    *sync.Cond
	credit  int      // bytes we may still send to the peer
	pending [][]byte // bytes from the peer, not yet written to conn
	queued  int
	peerEOF bool
	closed  bool
	readEOF atomic.Bool
	wrote   atomic.Bool // our side finished writing (peer's data all out, conn half closed)
}

type channels struct {
	mu     sync.Mutex
	byID   map[uint32]*channel
	out    *output
	nextID atomic.Uint32
}

func newChannels(out *output) *channels {
	return &channels{byID: map[uint32]*channel{}, out: out}
}

// add registers a connection; start begins carrying its bytes (after the peer knows of
// it: data for a channel it has not heard of would be dropped).
func (m *channels) add(id uint32, conn net.Conn) (*channel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.byID) >= maxChannels {
		return nil, errors.New("too many connections on one stream")
	}
	if _, taken := m.byID[id]; taken {
		return nil, errors.New("channel id in use")
	}
	c := &channel{id: id, conn: conn, out: m.out, mux: m, credit: window}
	c.cond = sync.NewCond(&c.mu)
	m.byID[id] = c
	return c, nil
}

func (c *channel) start() {
	go c.readLoop()
	go c.writeLoop()
}

func (m *channels) get(id uint32) *channel {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byID[id]
}

func (m *channels) remove(id uint32) {
	m.mu.Lock()
	delete(m.byID, id)
	m.mu.Unlock()
}

func (m *channels) closeAll() {
	m.mu.Lock()
	all := make([]*channel, 0, len(m.byID))
	for _, c := range m.byID {
		all = append(all, c)
	}
	m.mu.Unlock()
	for _, c := range all {
		c.reset(false)
	}
}

// dial connects from the pod's network namespace (in a goroutine: a slow peer must not
// hold up the stream) and answers the request.
func (m *channels) dial(id uint32, address string) {
	if len(address) > maxDialLabel {
		m.out.send('E', id, []byte("address too long"))
		return
	}
	go func() {
		conn, err := net.DialTimeout("tcp", address, dialTimeout)
		if err != nil {
			m.out.send('E', id, []byte(err.Error()))
			return
		}
		c, err := m.add(id, conn)
		if err != nil {
			conn.Close()
			m.out.send('E', id, []byte(err.Error()))
			return
		}
		m.out.send('A', id)
		c.start()
	}()
}

// accepted announces a connection the agent took (a stolen port) and carries it.
func (m *channels) accepted(conn net.Conn, port uint16, peer string) {
	id := agentIDBase | (m.nextID.Add(1) & 0x7fffffff)
	c, err := m.add(id, conn)
	if err != nil {
		conn.Close()
		return
	}
	body := binary.BigEndian.AppendUint16(nil, port)
	body = appendString(body, peer)
	m.out.send('a', id, body)
	c.start()
}

// frame handles the peer's channel frames; a frame for an unknown channel is dropped
// (it raced with a close).
func (m *channels) frame(f frame) {
	c := m.get(f.id)
	if c == nil {
		return
	}
	switch f.op {
	case 'd':
		c.mu.Lock()
		if c.queued+len(f.body) > window || c.peerEOF {
			c.mu.Unlock()
			c.reset(true) // the peer broke flow control
			return
		}
		c.pending = append(c.pending, append([]byte(nil), f.body...))
		c.queued += len(f.body)
		c.cond.Broadcast()
		c.mu.Unlock()
	case 'x':
		c.mu.Lock()
		c.peerEOF = true
		c.cond.Broadcast()
		c.mu.Unlock()
	case 'k':
		if len(f.body) == 4 {
			c.mu.Lock()
			c.credit += int(binary.BigEndian.Uint32(f.body))
			if c.credit > 4*window {
				c.credit = 4 * window
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		}
	case 'Z':
		c.reset(false)
	}
}

func (c *channel) readLoop() {
	buf := make([]byte, readSize)
	for {
		c.mu.Lock()
		for c.credit <= 0 && !c.closed {
			c.cond.Wait()
		}
		if c.closed {
			c.mu.Unlock()
			return
		}
		want := min(c.credit, readSize)
		c.mu.Unlock()
		n, err := c.conn.Read(buf[:want])
		if n > 0 {
			c.mu.Lock()
			c.credit -= n
			c.mu.Unlock()
			c.out.send('d', c.id, buf[:n])
		}
		if err != nil {
			c.readEOF.Store(true)
			c.out.send('x', c.id)
			c.finishIfDone()
			return
		}
	}
}

func (c *channel) writeLoop() {
	for {
		c.mu.Lock()
		for len(c.pending) == 0 && !c.peerEOF && !c.closed {
			c.cond.Wait()
		}
		if c.closed {
			c.mu.Unlock()
			return
		}
		if len(c.pending) == 0 && c.peerEOF {
			c.mu.Unlock()
			if half, ok := c.conn.(interface{ CloseWrite() error }); ok { // TCP, or a router's socket pair
				half.CloseWrite()
			}
			c.wrote.Store(true)
			c.finishIfDone()
			return
		}
		chunk := c.pending[0]
		c.pending = c.pending[1:]
		c.queued -= len(chunk)
		c.mu.Unlock()
		if _, err := c.conn.Write(chunk); err != nil {
			c.reset(true)
			return
		}
		c.out.send('k', c.id, binary.BigEndian.AppendUint32(nil, uint32(len(chunk))))
	}
}

func (c *channel) finishIfDone() {
	if c.readEOF.Load() && c.wrote.Load() {
		c.reset(false)
	}
}

// reset closes the connection; tell says whether the peer must hear of it.
func (c *channel) reset(tell bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.conn.Close()
	c.mux.remove(c.id)
	if tell {
		c.out.send('Z', c.id)
	}
}
