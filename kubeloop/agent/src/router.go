package main

// The router: one per bridge agent container, in its long-lived main process
// (`kubeloop-agent idle --router NAME`), shared by every bridge session on the pod.
//
// Each session (a `serve` process, one per developer's stream) registers a route for a
// port over a unix socket; the router owns the port's redirect and hands each connection
// that is the session's to it, as a file descriptor. Modes, fixed per port by its first
// route:
//
//	steal     every connection (but the node's: probes) goes to the one session
//	personal  HTTP/1.1 and h2c requests go to the session whose header matches; the
//	          rest, and requests without it, go on to the app. Many sessions at once.
//	swap      the app does not run (the router replaced it in its container): the router
//	          listens on the port itself and every connection goes to the one session
//
// A route lives while its socket does: a session that ends (its stream closed, its
// process killed) drops it at once, and a session whose client goes silent pauses it. A
// port with no live route goes back to the app; should the router itself die, the
// redirect expires by itself (nft.go).
//
// The socket is abstract (no file to write, so it works in a read-only root) and only
// processes of this same container may use it: the peer's cgroup must be ours.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	maxRoutes    = 64
	maxHeaderLen = 128
	routerMsgMax = 4096
)

type routeRequest struct {
	Op     string `json:"op"` // route | pause | resume
	Port   uint16 `json:"port,omitempty"`
	Mode   string `json:"mode,omitempty"`
	Header string `json:"header,omitempty"`
	Value  string `json:"value,omitempty"`
	Node   string `json:"node,omitempty"`
}

type routerReply struct {
	Error string `json:"error,omitempty"`
	Conn  bool   `json:"conn,omitempty"` // a connection (its descriptor rides along)
	Peer  string `json:"peer,omitempty"`
}

func routerAddress(name string) string { return "@kubeloop-router/" + name }

type route struct {
	session *net.UnixConn
	port    *portRoutes
	header  string // canonical header name (personal)
	value   string
	paused  bool
	send    sync.Mutex
	proxy   *httputil.ReverseProxy // personal: requests to the session
}

type portRoutes struct {
	mu       *sync.Mutex // the router's
	done     chan struct{}
	port     uint16
	mode     string
	routes   []*route
	listener net.Listener
	conns    chan net.Conn // personal: accepted connections for the HTTP server
	server   *http.Server
}

type router struct {
	mu      sync.Mutex
	ports   map[uint16]*portRoutes
	stealer *stealer
	node    net.IP
	origin  *httputil.ReverseProxy // personal: requests on to the app
}

func runRouter(name string) {
	listener, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: routerAddress(name), Net: "unixpacket"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubeloop-agent: router: %v\n", err)
		return
	}
	r := &router{ports: map[uint16]*portRoutes{}}
	r.origin = newProxy(func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, "tcp", ctx.Value(originKey{}).(string))
	})
	go r.renewLoop()
	for {
		conn, err := listener.AcceptUnix()
		if err != nil {
			continue
		}
		if err := sameContainer(conn); err != nil {
			conn.Close()
			continue
		}
		go r.serveSession(conn)
	}
}

// sameContainer admits only processes of this container (the sessions kubectl exec
// starts here), not the app or a sidecar sharing the pod's network.
func sameContainer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || cred.Pid <= 0 {
		return errors.New("unknown peer")
	}
	theirs, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cred.Pid))
	ours, err2 := os.ReadFile("/proc/self/cgroup")
	if err1 != nil || err2 != nil || !bytes.Equal(theirs, ours) || (cred.Uid != 0 && int(cred.Uid) != os.Getuid()) {
		return errors.New("peer outside this container")
	}
	return nil
}

func readMsg(conn *net.UnixConn, into any) error {
	buf := make([]byte, routerMsgMax)
	n, _, _, _, err := conn.ReadMsgUnix(buf, nil)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("closed")
	}
	return json.Unmarshal(buf[:n], into)
}

func writeMsg(conn *net.UnixConn, msg any, fd int) error {
	data, _ := json.Marshal(msg)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	_, _, err := conn.WriteMsgUnix(data, oob, nil)
	return err
}

// serveSession keeps one route for as long as its session's socket is open.
func (r *router) serveSession(conn *net.UnixConn) {
	defer conn.Close()
	var req routeRequest
	if err := readMsg(conn, &req); err != nil || req.Op != "route" {
		return
	}
	rt, err := r.add(conn, req)
	if err != nil {
		writeMsg(conn, routerReply{Error: err.Error()}, -1)
		return
	}
	defer r.remove(rt)
	if writeMsg(conn, routerReply{}, -1) != nil {
		return
	}
	for {
		var msg routeRequest
		if err := readMsg(conn, &msg); err != nil {
			return
		}
		r.mu.Lock()
		rt.paused = msg.Op == "pause"
		r.mu.Unlock()
		r.renew()
	}
}

func validRoute(req routeRequest) error {
	switch {
	case req.Port == 0:
		return errors.New("no port")
	case req.Mode != "steal" && req.Mode != "personal" && req.Mode != "swap":
		return fmt.Errorf("unknown mode %q", req.Mode)
	case req.Mode == "personal" && (req.Header == "" || req.Value == "" ||
		len(req.Header) > maxHeaderLen || len(req.Value) > maxHeaderLen ||
		strings.ContainsAny(req.Header, " :\r\n") || strings.ContainsAny(req.Value, "\r\n")):
		return errors.New("personal mode needs a header name and value (at most 128 characters, no line breaks)")
	}
	return nil
}

func (r *router) add(conn *net.UnixConn, req routeRequest) (*route, error) {
	if err := validRoute(req); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.ports[req.Port]
	if p != nil && len(p.routes) >= maxRoutes {
		return nil, errors.New("too many sessions on this port")
	}
	if p != nil && (p.mode != req.Mode || req.Mode != "personal") {
		if p.mode == "personal" || req.Mode == "personal" {
			return nil, fmt.Errorf("port %d is already bridged by someone else in %s mode", req.Port, p.mode)
		}
		return nil, fmt.Errorf("port %d is already bridged by someone else (another kubeloop bridge on this pod)", req.Port)
	}
	rt := &route{session: conn, header: textproto.CanonicalMIMEHeaderKey(req.Header), value: req.Value}
	if p != nil {
		for _, other := range p.routes {
			if other.header == rt.header && other.value == rt.value {
				return nil, fmt.Errorf("%s: %s is already bridged by someone else on port %d", rt.header, rt.value, req.Port)
			}
		}
	} else {
		var err error
		if p, err = r.openPort(req); err != nil {
			return nil, err
		}
	}
	rt.port = p
	if req.Mode == "personal" {
		rt.proxy = newProxy(rt.dial)
	}
	p.routes = append(p.routes, rt)
	r.renewLocked()
	return rt, nil
}

// openPort starts taking the port's connections: by a redirect to a listener of ours
// (steal, personal), or by listening on it (swap: the app is not there).
func (r *router) openPort(req routeRequest) (*portRoutes, error) {
	p := &portRoutes{mu: &r.mu, done: make(chan struct{}), port: req.Port, mode: req.Mode}
	var err error
	if req.Mode == "swap" {
		p.listener, err = net.Listen("tcp", fmt.Sprintf(":%d", req.Port))
		if err != nil {
			return nil, fmt.Errorf("cannot listen on port %d in the swapped container: %v", req.Port, err)
		}
	} else {
		if r.stealer == nil {
			node := net.ParseIP(req.Node)
			if r.stealer, err = newStealer(node); err != nil {
				return nil, fmt.Errorf("cannot redirect traffic in this pod (%v): the agent needs NET_ADMIN", err)
			}
		}
		if owner := r.stealer.owner(req.Port); owner != 0 {
			return nil, fmt.Errorf("port %d is already bridged by someone else (another kubeloop bridge on this pod)", req.Port)
		}
		if p.listener, err = net.Listen("tcp4", "0.0.0.0:0"); err != nil {
			return nil, err
		}
	}
	if req.Mode == "personal" {
		p.conns = make(chan net.Conn)
		p.server = personalServer(r.origin, p)
		go p.server.Serve(&chanListener{conns: p.conns, done: p.done, addr: p.listener.Addr()})
	}
	r.ports[req.Port] = p
	go r.acceptLoop(p)
	return p, nil
}

func (r *router) remove(rt *route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := rt.port
	for i, other := range p.routes {
		if other == rt {
			p.routes = append(p.routes[:i], p.routes[i+1:]...)
			break
		}
	}
	if rt.proxy != nil {
		rt.proxy.Transport.(*splitTransport).CloseIdleConnections()
	}
	if len(p.routes) == 0 {
		if p.mode != "swap" {
			r.stealer.release(p.port)
		}
		p.listener.Close()
		close(p.done)
		if p.server != nil {
			p.server.Close()
		}
		delete(r.ports, p.port)
	}
}

func (r *router) renewLoop() {
	for range time.Tick(renewEvery) {
		r.renew()
	}
}

func (r *router) renew() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.renewLocked()
}

// renewLocked keeps a port redirected while one of its routes is live (renewing the
// expiring element), and gives it back to the app while none is.
func (r *router) renewLocked() {
	for port, p := range r.ports {
		if p.mode == "swap" {
			continue
		}
		var err error
		if p.live() == nil {
			err = r.stealer.release(port)
		} else {
			err = r.stealer.install(port, uint16(p.listener.Addr().(*net.TCPAddr).Port), stealTTL)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kubeloop-agent: port %d: %v\n", port, err)
		}
	}
}

// live is the first route not paused (the one for steal and swap).
func (p *portRoutes) live() *route {
	for _, rt := range p.routes {
		if !rt.paused {
			return rt
		}
	}
	return nil
}

func (r *router) acceptLoop(p *portRoutes) {
	for {
		conn, err := p.listener.Accept()
		if err != nil {
			return
		}
		if p.mode == "personal" {
			select {
			case p.conns <- conn:
			case <-p.done:
				r.passThrough(conn, p)
			}
			continue
		}
		r.mu.Lock()
		rt := p.live()
		r.mu.Unlock()
		if rt == nil || rt.hand(conn) != nil {
			r.passThrough(conn, p)
		}
	}
}

// passThrough takes a connection that raced with a route's end on to the app (in swap
// mode there is no app: it is closed).
func (r *router) passThrough(conn net.Conn, p *portRoutes) {
	if p.mode == "swap" {
		conn.Close()
		return
	}
	go func() {
		defer conn.Close()
		app, err := net.DialTimeout("tcp", originalDst(conn), dialTimeout)
		if err != nil {
			return
		}
		defer app.Close()
		go func() { copyAndClose(app, conn) }()
		copyAndClose(conn, app)
	}()
}

func copyAndClose(dst, src net.Conn) {
	buf := make([]byte, readSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if half, ok := dst.(interface{ CloseWrite() error }); ok {
		half.CloseWrite()
	}
}

// hand gives the session a connection (its descriptor; ours is closed).
func (rt *route) hand(conn net.Conn) error {
	defer conn.Close()
	file, err := conn.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return err
	}
	defer file.Close()
	rt.send.Lock()
	defer rt.send.Unlock()
	return writeMsg(rt.session, routerReply{Conn: true, Peer: conn.RemoteAddr().String()}, int(file.Fd()))
}

// dial opens a connection to the session's local process for the HTTP proxy: one end of
// a socket pair goes to the session, which carries it like an accepted connection.
func (rt *route) dial(_ context.Context) (net.Conn, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	theirs := os.NewFile(uintptr(pair[1]), "session")
	defer theirs.Close()
	ours := os.NewFile(uintptr(pair[0]), "proxy")
	defer ours.Close()
	rt.send.Lock()
	err = writeMsg(rt.session, routerReply{Conn: true, Peer: "personal"}, pair[1])
	rt.send.Unlock()
	if err != nil {
		return nil, err
	}
	return net.FileConn(ours)
}

type originKey struct{}

// personalServer routes each request of a port's connections by its header: HTTP/1.1
// (keep-alive connections too: per request, not per connection) and h2c with prior
// knowledge, as gRPC uses it.
func personalServer(origin *httputil.ReverseProxy, p *portRoutes) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, originKey{}, originalDst(c))
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if rt := p.match(req.Header); rt != nil {
				rt.proxy.ServeHTTP(w, req)
				return
			}
			origin.ServeHTTP(w, req)
		}),
	}
}

// match finds the live route whose header the request carries.
func (p *portRoutes) match(header http.Header) *route {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rt := range p.routes {
		if !rt.paused && header.Get(rt.header) == rt.value {
			return rt
		}
	}
	return nil
}

// splitTransport sends HTTP/2 requests over h2c and the others over HTTP/1.1, each to
// the same dial.
type splitTransport struct{ h1, h2 *http.Transport }

func (t *splitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.ProtoMajor == 2 {
		return t.h2.RoundTrip(req)
	}
	return t.h1.RoundTrip(req)
}

func (t *splitTransport) CloseIdleConnections() {
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
}

func newProxy(dial func(context.Context) (net.Conn, error)) *httputil.ReverseProxy {
	transport := func(h2 bool) *http.Transport {
		var protocols http.Protocols
		if h2 {
			protocols.SetUnencryptedHTTP2(true)
		} else {
			protocols.SetHTTP1(true)
		}
		return &http.Transport{
			Protocols:           &protocols,
			DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		}
	}
	return &httputil.ReverseProxy{
		Transport:     &splitTransport{h1: transport(false), h2: transport(true)},
		FlushInterval: -1, // streams (gRPC, server-sent events) pass as they come
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", pr.In.Host
			if origin, ok := pr.In.Context().Value(originKey{}).(string); ok {
				pr.Out.URL.Host = origin // the pool's key: one pool per original address
			}
			// The app sees what it would have seen without the bridge.
			for _, name := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if values, ok := pr.In.Header[name]; ok {
					pr.Out.Header[name] = values
				}
			}
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "kubeloop bridge: "+err.Error(), http.StatusBadGateway)
		},
	}
}

// originalDst is where a redirected connection was going (SO_ORIGINAL_DST): the app.
func originalDst(conn net.Conn) string {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return ""
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return ""
	}
	var address string
	raw.Control(func(fd uintptr) {
		mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return
		}
		// struct sockaddr_in: family u16, port u16 (big endian), address 4 bytes
		port := int(mreq.Multiaddr[2])<<8 | int(mreq.Multiaddr[3])
		address = net.JoinHostPort(net.IP(mreq.Multiaddr[4:8]).String(), fmt.Sprint(port))
	})
	return address
}

// chanListener serves the connections a port's accept loop hands over.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	addr  net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case conn := <-l.conns:
		return conn, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return nil } // the port's removal ends it
func (l *chanListener) Addr() net.Addr { return l.addr }
