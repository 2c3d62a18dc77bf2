package main

// The pod side of `kubeloop bridge`:
//
//	'I' steal: u16 port, u32 node IPv4, mode, header, value
//	                                    -> 'A'   the port's connections (steal, swap) or
//	                                              the requests carrying the header
//	                                              (personal) come to the client as 'a'
//	                                              channels; the pod's router (router.go)
//	                                              decides, for every session on the pod
//	'U' DNS query: message              -> 'U' the answer of the pod's resolver
//	'Q' resolver settings               -> 'Q' the pod's /etc/resolv.conf
//
// A session's routes stay live only while the client's heartbeats ('P', every 2 s)
// arrive: they are paused when the heartbeats stop for 5 s, dropped when the stream
// ends, and the router's redirects expire 8 s after their last renewal should the router
// itself die.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	stealTTL     = 8 * time.Second // what a dead agent leaves behind expires in this
	renewEvery   = 2 * time.Second
	heartbeatMax = 5 * time.Second // the client pings every 2 s
	maxDNS       = 64 << 10
)

type bridge struct {
	out      *output
	mux      *channels
	router   string       // the router's name (router.go); "" on agents that cannot bridge
	lastPing atomic.Int64 // unix nanoseconds
	mu       sync.Mutex
	routes   map[uint16]*net.UnixConn // port -> our route at the router
	paused   bool                     // the client went silent: routes paused
	stop     chan struct{}
}

type stealRequest struct {
	port                uint16
	node                net.IP
	mode, header, value string
}

func newBridge(out *output, mux *channels, router string) *bridge {
	b := &bridge{out: out, mux: mux, router: router, routes: map[uint16]*net.UnixConn{}, stop: make(chan struct{})}
	b.lastPing.Store(time.Now().UnixNano())
	go b.watchClient()
	return b
}

func (b *bridge) heartbeat() { b.lastPing.Store(time.Now().UnixNano()) }

// steal asks the router for the port's connections (all of them, or the requests that
// carry the header in personal mode); they arrive as 'a' channels.
func (b *bridge) steal(req stealRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.router == "" {
		return errors.New("this agent cannot bridge (it runs without a router)")
	}
	if _, mine := b.routes[req.port]; mine {
		return fmt.Errorf("port %d is already bridged on this stream", req.port)
	}
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: routerAddress(b.router), Net: "unixpacket"})
	if err != nil {
		return fmt.Errorf("cannot reach the bridge router in the pod: %v", err)
	}
	node := ""
	if req.node != nil {
		node = req.node.String()
	}
	var reply routerReply
	err = writeMsg(conn, routeRequest{Op: "route", Port: req.port, Mode: req.mode, Header: req.header, Value: req.value, Node: node}, -1)
	if err == nil {
		err = readMsg(conn, &reply)
	}
	if err == nil && reply.Error != "" {
		err = errors.New(reply.Error)
	}
	if err != nil {
		conn.Close()
		return err
	}
	b.routes[req.port] = conn
	go b.receive(conn, req.port)
	return nil
}

// receive carries the connections the router hands over.
func (b *bridge) receive(conn *net.UnixConn, port uint16) {
	buf, oob := make([]byte, routerMsgMax), make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return
		}
		fd := receivedFD(oob[:oobn])
		var msg routerReply
		if json.Unmarshal(buf[:n], &msg) != nil || !msg.Conn || fd < 0 {
			if fd >= 0 {
				unix.Close(fd)
			}
			continue
		}
		file := os.NewFile(uintptr(fd), "bridged")
		handed, err := net.FileConn(file)
		file.Close()
		if err == nil {
			b.mux.accepted(handed, port, msg.Peer)
		}
	}
}

func receivedFD(oob []byte) int {
	messages, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(messages) != 1 {
		return -1
	}
	fds, err := unix.ParseUnixRights(&messages[0])
	if err != nil || len(fds) == 0 {
		return -1
	}
	for _, extra := range fds[1:] {
		unix.Close(extra)
	}
	return fds[0]
}

// watchClient pauses the routes when the client's heartbeats stop (the laptop sleeps,
// the network is cut but the stream stays open): the traffic goes back to the app at
// once, and comes here again if the heartbeats resume.
func (b *bridge) watchClient() {
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
		if silent != b.paused {
			op := map[bool]string{true: "pause", false: "resume"}[silent]
			for _, conn := range b.routes {
				writeMsg(conn, routeRequest{Op: op}, -1)
			}
			b.paused = silent
		}
		b.mu.Unlock()
	}
}

// close gives every port back at once (the stream ended).
func (b *bridge) close() {
	close(b.stop)
	b.mu.Lock()
	defer b.mu.Unlock()
	for port, conn := range b.routes {
		conn.Close()
		delete(b.routes, port)
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

// parseSteal reads: u16 port, u32 node IPv4, then (optional) mode, header, value.
func parseSteal(body *reader) stealRequest {
	req := stealRequest{port: uint16(body.u16()), mode: "steal"}
	if raw := body.take(4); raw != nil && binary.BigEndian.Uint32(raw) != 0 {
		req.node = net.IP(append([]byte(nil), raw...))
	}
	if len(body.data) > 0 {
		req.mode, req.header, req.value = body.str(), body.str(), body.str()
	}
	return req
}
