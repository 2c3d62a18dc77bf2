package main

// The wire format, the same in both directions:
//
//	op u8 | id u32 | length u32 | body[length]
//
// The length always counts the bytes that follow in this frame, so a reader never has to
// trust anything but the header it just read, and it refuses a length above maxFrame
// before allocating anything. Strings inside bodies are length-prefixed (u16) byte
// strings: any name a file system can hold travels unchanged.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

const (
	protocolVersion = "kubeloop-agent 2"
	maxFrame        = 1<<20 + 64<<10 // a 1 MiB chunk plus its path and header fields
	maxString       = 4096           // PATH_MAX: no longer path or link target exists
	chunkSize       = 1 << 20        // file content is sent in pieces of at most this
	flushEvery      = 2 * time.Millisecond
)

var errFrameTooLarge = errors.New("frame larger than the protocol allows")

type frame struct {
	op   byte
	id   uint32
	body []byte
}

// readFrame reads one frame into buf (reused between calls: a frame's body is only valid
// until the next call).
func readFrame(r *bufio.Reader, buf []byte) (frame, error) {
	var header [9]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return frame{}, err
	}
	length := binary.BigEndian.Uint32(header[5:])
	if length > maxFrame {
		return frame{}, fmt.Errorf("%w: %d bytes", errFrameTooLarge, length)
	}
	body := buf[:length]
	if _, err := io.ReadFull(r, body); err != nil {
		return frame{}, err
	}
	return frame{header[0], binary.BigEndian.Uint32(header[1:]), body}, nil
}

// reader takes a body apart with bounds checks: a short or malformed body is an error,
// never a panic.
type reader struct {
	data []byte
	err  error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.data) {
		if r.err == nil {
			r.err = errors.New("malformed request: body too short")
		}
		return nil
	}
	part := r.data[:n]
	r.data = r.data[n:]
	return part
}

func (r *reader) u16() int {
	b := r.take(2)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

func (r *reader) u32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) u64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (r *reader) str() string {
	n := r.u16()
	if n > maxString && r.err == nil {
		r.err = errors.New("malformed request: string too long")
	}
	return string(r.take(n))
}

func (r *reader) rest() []byte {
	part := r.data
	r.data = nil
	return part
}

func appendString(b []byte, s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// output serialises replies from every goroutine onto stdout; a flusher goroutine pushes
// the buffer out (see flushLoop).
type output struct {
	mu    sync.Mutex
	w     *bufio.Writer
	dirty chan struct{}
	err   error
	pace  atomic.Int64 // nanoseconds between flushes (see flushLoop)
}

func newOutput(w io.Writer) *output {
	o := &output{w: bufio.NewWriterSize(w, 1<<16), dirty: make(chan struct{}, 1)}
	o.pace.Store(int64(flushEvery))
	go o.flushLoop()
	return o
}

// flushLoop flushes as soon as something waits, but at most every 2 ms on the exec
// stream: a lone reply goes out at once, and a burst of thousands costs a few hundred
// writes through the API server rather than thousands. On the data lane (a plain TCP
// connection) every frame goes at once: a request/response exchange then never waits
// for the pace.
func (o *output) flushLoop() {
	var last time.Time
	for range o.dirty {
		if wait := time.Duration(o.pace.Load()) - time.Since(last); wait > 0 {
			time.Sleep(wait)
		}
		last = time.Now()
		o.mu.Lock()
		if err := o.w.Flush(); err != nil && o.err == nil {
			o.err = err
		}
		o.mu.Unlock()
	}
}

func (o *output) send(op byte, id uint32, parts ...[]byte) {
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	var header [9]byte
	header[0] = op
	binary.BigEndian.PutUint32(header[1:], id)
	binary.BigEndian.PutUint32(header[5:], uint32(total))
	o.mu.Lock()
	o.w.Write(header[:])
	for _, p := range parts {
		o.w.Write(p)
	}
	o.mu.Unlock()
	select {
	case o.dirty <- struct{}{}:
	default:
	}
}

// sendLarge splits a body over continuation frames (op in lower case) and a last frame
// (op itself), so no frame exceeds the limit the client enforces.
func (o *output) sendLarge(op byte, id uint32, body []byte) {
	more := op | 0x20 // 'H' -> 'h'
	for len(body) > chunkSize {
		o.send(more, id, body[:chunkSize])
		body = body[chunkSize:]
	}
	o.send(op, id, body)
}

// redirect sends every later frame to w (the data lane), after what is buffered.
func (o *output) redirect(w io.Writer) {
	o.mu.Lock()
	o.w.Flush()
	o.w = bufio.NewWriterSize(w, 1<<16)
	o.mu.Unlock()
	o.pace.Store(0)
}

func (o *output) flush() {
	o.mu.Lock()
	o.w.Flush()
	o.mu.Unlock()
}
