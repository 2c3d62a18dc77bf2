package main

// The request loop of one client stream. Requests (client -> agent), with their body:
//
//	'V' hello                         -> 'V' protocol version
//	'B' bind: dest                    -> 'A'   (dest: an absolute folder; every path
//	                                            below must lie under a bound dest)
//	'W' write: path, mode u32, data   -> 'A'   (a whole file of at most 1 MiB)
//	'O' open write: path, mode u32    -> nothing yet; then 'w' chunks (same id), then
//	'c' commit (same id)              -> 'A'   (a large file, streamed)
//	'M' mkdir: path, mode u32         -> 'A'
//	'L' symlink: path, target         -> 'A'
//	'D' delete: path                  -> 'A'
//	'H' list: path                    -> 'h'... 'H' listing (see listing.go)
//	'S' list some: root, n u32, paths -> 'h'... 'H'
//	'N' watch: path                   -> 'A', then 'C' reports (see watch.go)
//	'R' read: path, max u64           -> 'f'... 'F' content
//	'K' signal: u32                   -> 'A'   (to the target's process)
//	'Y' at close: path, signal u32    -> 'A'   (if the stream ends first: delete path,
//	                                            signal the target; empty path: forget it)
//	'P' ping: up to 64 bytes          -> 'P' the same bytes
//	'X' data lane                     -> 'X' u16 port, token (see lane.go)
//
// Paths and strings are u16-length-prefixed. Any failure is an 'E' reply with a message
// for the same id; the stream stays in step because every frame carries its own length.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

const (
	maxBinds      = 64
	maxOpenWrites = 16
	maxListNames  = 100_000
)

type server struct {
	rootFD int // the container's root (-1: this agent serves the network only)
	out    *output
	trees  []*tree
	writes map[uint32]*pendingWrite
	// signalTarget delivers a signal to the app (tests replace it).
	signalTarget func(syscall.Signal) error
	mux          *channels
	bridge       *bridge
	lane         net.Conn // the data lane, once open (lane.go)
	// undo is what a killed client leaves to do ('Y'): a debug session's folder to
	// remove and the restart that takes the debugger out of the app.
	undo *undoAtClose
}

type undoAtClose struct {
	path   string
	signal syscall.Signal
}

func newServer(rootFD int, out *output, signal func(syscall.Signal) error, router string) *server {
	mux := newChannels(out)
	return &server{rootFD: rootFD, out: out, writes: map[uint32]*pendingWrite{},
		signalTarget: signal, mux: mux, bridge: newBridge(out, mux, router)}
}

func (s *server) close() {
	if s.undo != nil { // before the trees close: the path lies in one
		if t, rel, err := s.locate(s.undo.path); err == nil && rel != "" {
			t.remove(rel)
		}
		s.signalTarget(s.undo.signal)
		s.undo = nil
	}
	if s.lane != nil {
		s.lane.Close()
	}
	s.bridge.close()
	s.mux.closeAll()
	for id, w := range s.writes {
		w.abort()
		delete(s.writes, id)
	}
	for _, t := range s.trees {
		t.close()
	}
	s.trees = nil
}

// run serves requests until the stream ends or breaks the protocol.
func (s *server) run(in io.Reader) error {
	r := bufio.NewReaderSize(in, 1<<20)
	buf := make([]byte, maxFrame)
	for {
		f, err := readFrame(r, buf)
		if err == io.EOF || (err != nil && s.lane != nil && errors.Is(err, net.ErrClosed)) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.op == 'X' && s.lane == nil {
			lane, err := s.openLane(f.id)
			if err != nil {
				s.reply(f.id, err)
				continue
			}
			// From now on the exec stream only tells whether the client lives: its end
			// ends the lane, and with it this loop.
			s.lane = lane
			go func() { io.Copy(io.Discard, in); lane.Close() }()
			r = bufio.NewReaderSize(lane, 1<<20)
			continue
		}
		s.handle(f)
	}
}

// locate finds the bound destination holding the absolute path p.
func (s *server) locate(p string) (*tree, string, error) {
	return s.find(p, false)
}

// locateFresh is locate for the requests that start a full look (list, watch): a
// destination the app replaced meanwhile is opened again first.
func (s *server) locateFresh(p string) (*tree, string, error) {
	return s.find(p, true)
}

func (s *server) find(p string, fresh bool) (*tree, string, error) {
	if strings.ContainsRune(p, 0) {
		return nil, "", fmt.Errorf("bad path %q", p)
	}
	var best *tree
	for _, t := range s.trees {
		if (p == t.dest || strings.HasPrefix(p, t.dest+"/")) && (best == nil || len(t.dest) > len(best.dest)) {
			best = t
		}
	}
	if best == nil {
		return nil, "", fmt.Errorf("%q is outside every sync destination", p)
	}
	if fresh && best.replaced() {
		reopened, err := openTree(s.rootFD, best.dest, true)
		if err != nil {
			return nil, "", err
		}
		best.close()
		*best = *reopened
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, best.dest), "/")
	if err := checkRel(rel); err != nil {
		return nil, "", err
	}
	return best, rel, nil
}

func (s *server) handle(f frame) {
	for _, t := range s.trees {
		t.release()
	}
	body := &reader{data: f.body}
	var err error
	switch f.op {
	case 'V':
		s.out.send('V', f.id, []byte(protocolVersion))
		return
	case 'P':
		if len(f.body) > 64 {
			err = errors.New("ping body too long")
			break
		}
		s.bridge.heartbeat()
		s.out.send('P', f.id, f.body)
		return
	case 'T':
		address := body.str()
		if body.err != nil {
			err = body.err
			break
		}
		s.mux.dial(f.id, address)
		return
	case 'd', 'x', 'k', 'Z':
		s.mux.frame(f)
		return
	case 'I':
		req := parseSteal(body)
		if body.err != nil {
			err = body.err
			break
		}
		err = s.bridge.steal(req)
	case 'U':
		if len(f.body) == 0 || len(f.body) > maxDNS {
			err = errors.New("bad DNS query")
			break
		}
		s.bridge.dns(f.id, f.body)
		return
	case 'Q':
		s.out.send('Q', f.id, resolvConf())
		return
	case 'B':
		err = s.bind(body.str(), body)
	case 'W':
		err = s.write(body)
	case 'O':
		err = s.open(f.id, body)
		if err == nil {
			return // answered at commit
		}
	case 'w':
		if w, ok := s.writes[f.id]; ok {
			w.write(f.body)
		}
		return
	case 'c':
		w, ok := s.writes[f.id]
		if !ok {
			err = errors.New("commit of a write that was not opened")
			break
		}
		delete(s.writes, f.id)
		err = w.commit()
	case 'M':
		err = s.mkdir(body)
	case 'L':
		err = s.symlink(body)
	case 'D':
		err = s.remove(body)
	case 'H', 'S':
		s.list(f, body)
		return
	case 'N':
		err = s.watch(f.id, body)
	case 'R':
		s.read(f.id, body)
		return
	case 'K':
		err = s.signal(body)
	case 'Y':
		err = s.setUndo(body)
	default:
		err = fmt.Errorf("unknown request %q", f.op)
	}
	s.reply(f.id, err)
}

func (s *server) reply(id uint32, err error) {
	if err != nil {
		msg := err.Error()
		if len(msg) > 1024 {
			msg = msg[:1024]
		}
		s.out.send('E', id, []byte(msg))
		return
	}
	s.out.send('A', id)
}

func (s *server) bind(dest string, body *reader) error {
	if body.err != nil {
		return body.err
	}
	for _, t := range s.trees {
		if t.dest == dest {
			_, _, err := s.locateFresh(dest)
			return err
		}
	}
	if len(s.trees) >= maxBinds {
		return errors.New("too many destinations on one stream")
	}
	if s.rootFD < 0 {
		return errors.New("this agent serves the network only, not the app's files")
	}
	t, err := openTree(s.rootFD, dest, true)
	if err != nil {
		return err
	}
	s.trees = append(s.trees, t)
	return nil
}

func (s *server) write(body *reader) error {
	p := body.str()
	mode := body.u32()
	data := body.rest()
	if body.err != nil {
		return body.err
	}
	t, rel, err := s.locate(p)
	if err != nil {
		return err
	}
	return t.writeFile(rel, mode, data)
}

func (s *server) open(id uint32, body *reader) error {
	p := body.str()
	mode := body.u32()
	if body.err != nil {
		return body.err
	}
	if old, ok := s.writes[id]; ok {
		old.abort()
		delete(s.writes, id)
	}
	if len(s.writes) >= maxOpenWrites {
		return errors.New("too many files open for writing")
	}
	t, rel, err := s.locate(p)
	if err != nil {
		return err
	}
	w, err := t.beginWrite(rel, mode, true)
	if err != nil {
		return err
	}
	s.writes[id] = w
	return nil
}

func (s *server) mkdir(body *reader) error {
	p := body.str()
	mode := body.u32()
	if body.err != nil {
		return body.err
	}
	t, rel, err := s.locate(p)
	if err != nil {
		return err
	}
	return t.mkdir(rel, mode)
}

func (s *server) symlink(body *reader) error {
	p := body.str()
	target := body.str()
	if body.err != nil {
		return body.err
	}
	t, rel, err := s.locate(p)
	if err != nil {
		return err
	}
	return t.symlink(rel, target)
}

func (s *server) remove(body *reader) error {
	p := body.str()
	if body.err != nil {
		return body.err
	}
	t, rel, err := s.locate(p)
	if err != nil {
		return err
	}
	if rel == "" {
		return fmt.Errorf("refusing to delete the destination %s itself", t.dest)
	}
	return t.remove(rel)
}

func (s *server) list(f frame, body *reader) {
	root := body.str()
	var rels []string
	if f.op == 'S' {
		n := body.u32()
		if n > maxListNames {
			s.reply(f.id, errors.New("too many names in one request"))
			return
		}
		for i := uint32(0); i < n && body.err == nil; i++ {
			rels = append(rels, body.str())
		}
	}
	if body.err != nil {
		s.reply(f.id, body.err)
		return
	}
	t, rel, err := s.locateFresh(root)
	if err == nil && rel != "" {
		err = fmt.Errorf("list %q: name a bound destination", root)
	}
	if err != nil {
		s.reply(f.id, err)
		return
	}
	var listing []byte
	var complete bool
	if f.op == 'H' {
		listing, complete = t.listAll()
	} else {
		listing, complete = t.listSome(rels)
	}
	if !complete {
		s.reply(f.id, fmt.Errorf("%s holds more than %d entries", t.dest, maxListing))
		return
	}
	s.out.sendLarge('H', f.id, listing)
}

func (s *server) watch(id uint32, body *reader) error {
	p := body.str()
	if body.err != nil {
		return body.err
	}
	t, rel, err := s.locateFresh(p)
	if err != nil {
		return err
	}
	if rel != "" {
		return fmt.Errorf("watch %q: name a bound destination", p)
	}
	return startWatch(t, id, s.out)
}

func (s *server) read(id uint32, body *reader) {
	p := body.str()
	limit := body.u64()
	if body.err != nil {
		s.reply(id, body.err)
		return
	}
	t, rel, err := s.locate(p)
	if err != nil {
		s.reply(id, err)
		return
	}
	file, size, err := t.openRead(rel)
	if err != nil {
		s.reply(id, err)
		return
	}
	defer file.Close()
	if uint64(size) > limit {
		s.reply(id, fmt.Errorf("%s is %d bytes, more than the %d asked for", p, size, limit))
		return
	}
	buf := make([]byte, chunkSize)
	var sent uint64
	for {
		n, err := io.ReadFull(file, buf)
		sent += uint64(n)
		if sent > limit {
			s.reply(id, fmt.Errorf("%s grew past %d bytes while being read", p, limit))
			return
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			s.out.send('F', id, buf[:n])
			return
		}
		if err != nil {
			s.reply(id, err)
			return
		}
		s.out.send('f', id, buf[:n])
	}
}

func (s *server) setUndo(body *reader) error {
	p, number := body.str(), body.u32()
	if body.err != nil {
		return body.err
	}
	if p == "" {
		s.undo = nil
		return nil
	}
	if _, rel, err := s.locate(p); err != nil {
		return err
	} else if rel == "" {
		return fmt.Errorf("refusing to delete a destination itself (%s) at close", p)
	}
	if syscall.Signal(number) != syscall.SIGHUP {
		return fmt.Errorf("signal %d at close: only SIGHUP (restart) is allowed", number)
	}
	s.undo = &undoAtClose{path: p, signal: syscall.SIGHUP}
	return nil
}

func (s *server) signal(body *reader) error {
	number := body.u32()
	if body.err != nil {
		return body.err
	}
	switch syscall.Signal(number) {
	case syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL:
		return s.signalTarget(syscall.Signal(number))
	}
	return fmt.Errorf("signal %d is not one kubeloop sends", number)
}
