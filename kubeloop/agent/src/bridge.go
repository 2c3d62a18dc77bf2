package main

// The pod side of `kubeloop bridge`:
//
//	'I' steal: u16 port, u32 node IPv4  -> 'A'   new connections to the port (from
//	                                              anywhere but the node) come to the
//	                                              client as 'a' channels
//	'U' DNS query: message              -> 'U' the answer of the pod's resolver
//	'Q' resolver settings               -> 'Q' the pod's /etc/resolv.conf
//
// Stolen ports stay stolen only while the client's heartbeats ('P', every 2 s) arrive:
// the agent gives them back when the heartbeats stop for 5 s, their nftables elements
// expire 8 s after the last renewal should the agent itself die, and the stream's end
// releases them at once.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	stealTTL     = 8 * time.Second // what a dead agent leaves behind expires in this
	renewEvery   = 2 * time.Second
	heartbeatMax = 5 * time.Second // the client pings every 2 s
	maxDNS       = 64 << 10
)

type bridge struct {
	out       *output
	mux       *channels
	lastPing  atomic.Int64 // unix nanoseconds
	mu        sync.Mutex
	stealer   *stealer
	listeners map[uint16]net.Listener // stolen port -> our listener
	paused    bool                    // the client went silent: ports given back
	stop      chan struct{}
}

func newBridge(out *output, mux *channels) *bridge {
	b := &bridge{out: out, mux: mux, listeners: map[uint16]net.Listener{}, stop: make(chan struct{})}
	b.lastPing.Store(time.Now().UnixNano())
	return b
}

func (b *bridge) heartbeat() { b.lastPing.Store(time.Now().UnixNano()) }

func (b *bridge) steal(port uint16, node net.IP) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if port == 0 {
		return errors.New("no port to steal")
	}
	if b.stealer == nil {
		s, err := newStealer(node)
		if err != nil {
			return fmt.Errorf("cannot redirect traffic in this pod (%v): the agent needs NET_ADMIN", err)
		}
		b.stealer = s
		go b.renewLoop()
	}
	if _, mine := b.listeners[port]; mine {
		return nil
	}
	if owner := b.stealer.owner(port); owner != 0 {
		return fmt.Errorf("port %d is already bridged by someone else (another kubeloop bridge on this pod)", port)
	}
	listener, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		return err
	}
	local := uint16(listener.Addr().(*net.TCPAddr).Port)
	if err := b.stealer.install(port, local, stealTTL); err != nil {
		listener.Close()
		return err
	}
	b.listeners[port] = listener
	go b.acceptLoop(listener, port)
	return nil
}

func (b *bridge) acceptLoop(listener net.Listener, port uint16) {
	for {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		b.mux.accepted(conn, port)
	}
}

// renewLoop keeps the stolen ports' elements alive while the client is. When its
// heartbeats stop (the laptop sleeps, the network is cut but the stream stays open), the
// ports go back to the app at once rather than when the elements run out, and are taken
// again if the heartbeats resume.
func (b *bridge) renewLoop() {
	ticker := time.NewTicker(renewEvery)
	defer ticker.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-ticker.C:
		}
		silent := time.Since(time.Unix(0, b.lastPing.Load())) > heartbeatMax
		b.mu.Lock()
		for port, listener := range b.listeners {
			var err error
			if silent {
				if !b.paused {
					err = b.stealer.release(port)
				}
			} else {
				err = b.stealer.install(port, uint16(listener.Addr().(*net.TCPAddr).Port), stealTTL)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "kubeloop-agent: port %d: %v\n", port, err)
			}
		}
		b.paused = silent
		b.mu.Unlock()
	}
}

// close gives every stolen port back at once (the stream ended).
func (b *bridge) close() {
	close(b.stop)
	b.mu.Lock()
	defer b.mu.Unlock()
	for port, listener := range b.listeners {
		if b.stealer != nil {
			b.stealer.release(port)
		}
		listener.Close()
		delete(b.listeners, port)
	}
}

func resolvConf() []byte {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil || len(data) > 64<<10 {
		return nil
	}
	return data
}

func nameserver() string {
	for _, line := range strings.Split(string(resolvConf()), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return net.JoinHostPort(fields[1], "53")
		}
	}
	return "127.0.0.1:53"
}

// dns asks the pod's resolver (in a goroutine) and answers with what it said.
func (b *bridge) dns(id uint32, query []byte) {
	query = append([]byte(nil), query...)
	go func() {
		conn, err := net.DialTimeout("udp", nameserver(), 3*time.Second)
		if err != nil {
			b.out.send('E', id, []byte(err.Error()))
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(4 * time.Second))
		if _, err := conn.Write(query); err != nil {
			b.out.send('E', id, []byte(err.Error()))
			return
		}
		answer := make([]byte, maxDNS)
		n, err := conn.Read(answer)
		if err != nil {
			b.out.send('E', id, []byte(err.Error()))
			return
		}
		b.out.send('U', id, answer[:n])
	}()
}

func parseSteal(body *reader) (uint16, net.IP) {
	port := uint16(body.u16())
	raw := body.take(4)
	if raw == nil || binary.BigEndian.Uint32(raw) == 0 {
		return port, nil
	}
	return port, net.IP(raw)
}
