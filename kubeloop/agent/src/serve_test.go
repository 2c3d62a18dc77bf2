package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A container root in a temporary folder: "app" is the sync destination, "outside"
// holds a file that no request may touch.
type sandbox struct {
	root    string
	outside string
	signals []syscall.Signal
}

func newSandbox(t testing.TB) *sandbox {
	root := t.TempDir()
	outside := filepath.Join(root, "outside")
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("keep"), 0o600)
	return &sandbox{root: root, outside: outside}
}

// run feeds the raw request stream to a fresh server and returns its replies.
func (sb *sandbox) run(t testing.TB, stream []byte) []frame {
	// A generated 'X' opens a lane nothing will connect to: do not hold the loop 30 s.
	defer func(wait time.Duration) { laneWait = wait }(laneWait)
	laneWait = 20 * time.Millisecond
	rootFD, err := unix.Open(sb.root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFD)
	var replies bytes.Buffer
	out := &output{w: newBufWriter(&replies), dirty: make(chan struct{}, 1)}
	s := newServer(rootFD, out, func(sig syscall.Signal) error {
		sb.signals = append(sb.signals, sig)
		return nil
	}, "")
	s.run(bytes.NewReader(stream))
	s.close()
	stopWatches()
	out.flush()
	return parseReplies(t, replies.Bytes())
}

// outsideUntouched checks that nothing in "outside" (a folder no request binds) changed.
func (sb *sandbox) outsideUntouched(t testing.TB) {
	t.Helper()
	inside, _ := os.ReadDir(sb.outside)
	data, err := os.ReadFile(filepath.Join(sb.outside, "secret"))
	if len(inside) != 1 || err != nil || string(data) != "keep" {
		t.Fatalf("a file outside the destination changed: %v %q %v", inside, data, err)
	}
}

func parseReplies(t testing.TB, raw []byte) []frame {
	var frames []frame
	for len(raw) >= 9 {
		length := binary.BigEndian.Uint32(raw[5:9])
		if int(length) > len(raw)-9 {
			t.Fatalf("truncated reply")
		}
		frames = append(frames, frame{raw[0], binary.BigEndian.Uint32(raw[1:5]), append([]byte(nil), raw[9:9+length]...)})
		raw = raw[9+length:]
	}
	if len(raw) != 0 {
		t.Fatalf("trailing reply bytes")
	}
	return frames
}

type request struct{ b bytes.Buffer }

func (r *request) frame(op byte, id uint32, parts ...[]byte) *request {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	var header [9]byte
	header[0] = op
	binary.BigEndian.PutUint32(header[1:], id)
	binary.BigEndian.PutUint32(header[5:], uint32(len(body)))
	r.b.Write(header[:])
	r.b.Write(body)
	return r
}

func str(s string) []byte { return appendString(nil, s) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func replyTo(frames []frame, id uint32) frame {
	for _, f := range frames {
		if f.id == id && f.op != 'h' && f.op != 'f' && f.op != 'C' {
			return f
		}
	}
	return frame{}
}

func TestWritesStayInsideTheDestination(t *testing.T) {
	sb := newSandbox(t)
	req := (&request{}).
		frame('B', 1, str("/app")).
		frame('W', 2, str("/app/ok.txt"), u32(0o644), []byte("fine")).
		frame('W', 3, str("/app/../outside/secret"), u32(0o644), []byte("owned")).
		frame('W', 4, str("/outside/secret"), u32(0o644), []byte("owned")).
		frame('W', 5, str("/app/"), u32(0o644), []byte("x")).
		frame('D', 6, str("/app")).
		frame('D', 7, str("")).
		frame('B', 8, str("/")).
		frame('B', 9, str("/outside/../outside")).
		frame('D', 10, str("/app/./x"))
	replies := sb.run(t, req.b.Bytes())
	if replyTo(replies, 2).op != 'A' {
		t.Fatalf("a plain write failed: %q", replyTo(replies, 2).body)
	}
	for id := uint32(3); id <= 10; id++ {
		if got := replyTo(replies, id); got.op != 'E' {
			t.Errorf("request %d was not refused: %c", id, got.op)
		}
	}
	sb.outsideUntouched(t)
}

func TestSymlinkedFoldersAreNotFollowed(t *testing.T) {
	sb := newSandbox(t)
	os.MkdirAll(filepath.Join(sb.root, "app"), 0o755)
	// The app swapped a folder for a link to somewhere else, and planted a link where
	// the agent's temporary file could be.
	os.Symlink(sb.outside, filepath.Join(sb.root, "app", "sub"))
	os.Symlink(filepath.Join(sb.outside, "secret"), filepath.Join(sb.root, "app", ".kubeloop-file"))
	os.WriteFile(filepath.Join(sb.root, "app", "file"), []byte("old"), 0o644)
	req := (&request{}).
		frame('B', 1, str("/app")).
		frame('W', 2, str("/app/sub/secret"), u32(0o644), []byte("owned")).
		frame('D', 3, str("/app/sub/secret")).
		frame('M', 4, str("/app/sub/x"), u32(0o755)).
		frame('W', 5, str("/app/file"), u32(0o4755), []byte("new")).
		frame('R', 6, str("/app/sub/secret"), u64(100)).
		frame('N', 7, str("/app/sub"))
	replies := sb.run(t, req.b.Bytes())
	for _, id := range []uint32{2, 3, 4, 6, 7} {
		if got := replyTo(replies, id); got.op != 'E' {
			t.Errorf("request %d went through a symlinked folder: %c", id, got.op)
		}
	}
	if got := replyTo(replies, 5); got.op != 'A' {
		t.Fatalf("replacing a file failed: %q", got.body)
	}
	data, _ := os.ReadFile(filepath.Join(sb.root, "app", "file"))
	if string(data) != "new" {
		t.Fatalf("file not replaced: %q", data)
	}
	sb.outsideUntouched(t)
}

func TestDestinationThatIsASymlinkIsRefused(t *testing.T) {
	sb := newSandbox(t)
	os.Symlink(sb.outside, filepath.Join(sb.root, "app"))
	replies := sb.run(t, (&request{}).frame('B', 1, str("/app")).frame('D', 2, str("/app/secret")).b.Bytes())
	if replyTo(replies, 1).op != 'E' || replyTo(replies, 2).op != 'E' {
		t.Fatal("a symlinked destination was used")
	}
	os.Remove(filepath.Join(sb.root, "app"))
	sb.outsideUntouched(t)
}

func TestOversizedFramesEndTheStreamWithoutAllocating(t *testing.T) {
	sb := newSandbox(t)
	var header [9]byte
	header[0] = 'W'
	binary.BigEndian.PutUint32(header[5:], 0xffffffff)
	if replies := sb.run(t, header[:]); len(replies) != 0 {
		t.Fatalf("replied to a broken frame: %v", replies)
	}
	// A path length beyond the body is an error reply, not a crash.
	body := append(binary.BigEndian.AppendUint16(nil, 60000), "x"...)
	replies := sb.run(t, (&request{}).frame('B', 1, str("/app")).frame('W', 2, body).b.Bytes())
	if replyTo(replies, 2).op != 'E' {
		t.Fatal("a short body was accepted")
	}
}

func TestListingCarriesAnyName(t *testing.T) {
	sb := newSandbox(t)
	app := filepath.Join(sb.root, "app")
	os.MkdirAll(app, 0o755)
	names := []string{"tab\tname", "new\nline", "cr\rx", "form\x0cfeed", "fs\x1cx", "nel\u0085x", "ls\u2028x", " lead", "trail ", "\xff\xfe"}
	for _, n := range names {
		os.WriteFile(filepath.Join(app, n), []byte(n), 0o644)
	}
	replies := sb.run(t, (&request{}).frame('B', 1, str("/app")).frame('H', 2, str("/app")).b.Bytes())
	listing := replyTo(replies, 2)
	if listing.op != 'H' {
		t.Fatalf("listing failed: %q", listing.body)
	}
	r := &reader{data: listing.body}
	var got []string
	for len(r.data) > 0 && r.err == nil {
		r.take(1)
		r.u32()
		got = append(got, r.str())
		r.str()
	}
	sort.Strings(got)
	sort.Strings(names)
	if strings.Join(got, "|") != strings.Join(names, "|") {
		t.Fatalf("names changed on the way:\n%q\n%q", got, names)
	}
}

func TestLargeFilesStreamAndReadBack(t *testing.T) {
	sb := newSandbox(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB
	req := (&request{}).frame('B', 1, str("/app")).frame('O', 2, str("/app/big"), u32(0o600))
	for rest := content; len(rest) > 0; {
		n := min(len(rest), chunkSize)
		req.frame('w', 2, rest[:n])
		rest = rest[n:]
	}
	req.frame('c', 2).frame('R', 3, str("/app/big"), u64(uint64(len(content)))).frame('R', 4, str("/app/big"), u64(10))
	replies := sb.run(t, req.b.Bytes())
	if replyTo(replies, 2).op != 'A' {
		t.Fatalf("streamed write failed: %q", replyTo(replies, 2).body)
	}
	var read []byte
	for _, f := range replies {
		if f.id == 3 && (f.op == 'f' || f.op == 'F') {
			read = append(read, f.body...)
		}
	}
	if !bytes.Equal(read, content) {
		t.Fatalf("read back %d bytes, wrote %d", len(read), len(content))
	}
	if replyTo(replies, 4).op != 'E' {
		t.Fatal("a read above the asked limit was served")
	}
}

func TestOnlyRestartSignals(t *testing.T) {
	sb := newSandbox(t)
	replies := sb.run(t, (&request{}).frame('K', 1, u32(1)).frame('K', 2, u32(19)).b.Bytes())
	if replyTo(replies, 1).op != 'A' || replyTo(replies, 2).op != 'E' {
		t.Fatal("signals not filtered")
	}
	if len(sb.signals) != 1 || sb.signals[0] != syscall.SIGHUP {
		t.Fatalf("signals sent: %v", sb.signals)
	}
}

// FuzzServe feeds arbitrary request streams to the agent: it must never crash, hang or
// touch anything outside the destination. Seeds: a valid session, and the bodies above.
func FuzzServe(f *testing.F) {
	valid := (&request{}).
		frame('V', 1).
		frame('B', 2, str("/app")).
		frame('M', 3, str("/app/d"), u32(0o755)).
		frame('W', 4, str("/app/d/f"), u32(0o644), []byte("x")).
		frame('L', 5, str("/app/l"), str("../outside/secret")).
		frame('O', 6, str("/app/big"), u32(0o644)).frame('w', 6, []byte("abc")).frame('c', 6).
		frame('H', 7, str("/app")).
		frame('S', 8, str("/app"), u32(2), str("d"), str("l")).
		frame('R', 9, str("/app/d/f"), u64(10)).
		frame('D', 10, str("/app/d")).
		frame('P', 11, []byte("hi"))
	f.Add(valid.b.Bytes())
	f.Add((&request{}).frame('B', 1, str("/app")).frame('W', 2, str("/app/../outside/secret"), u32(0o644)).b.Bytes())
	f.Add((&request{}).frame('B', 1, str("/app")).frame('D', 2, str("/app/l/secret")).b.Bytes())
	f.Add((&request{}).frame('B', 1, str("/app")).frame('L', 2, str("/app/l"), str("../outside")).
		frame('Y', 3, str("/app/l/secret"), u32(1)).b.Bytes())
	f.Fuzz(func(t *testing.T, stream []byte) {
		if len(stream) > 1<<16 {
			return
		}
		sb := newSandbox(t)
		sb.run(t, stream)
		sb.outsideUntouched(t)
	})
}

// TestMutatedSessions is the fuzzer's bounded, seeded cousin that runs in every test
// run: thousands of random mutations of a valid session.
func TestMutatedSessions(t *testing.T) {
	cases := 3000
	if testing.Short() {
		cases = 300
	}
	rng := rand.New(rand.NewSource(7))
	seed := (&request{}).
		frame('B', 2, str("/app")).
		frame('M', 3, str("/app/d"), u32(0o755)).
		frame('W', 4, str("/app/d/f"), u32(0o644), []byte("x")).
		frame('L', 5, str("/app/l"), str("../outside")).
		frame('D', 6, str("/app/l/secret")).
		frame('O', 7, str("/app/big"), u32(0o644)).frame('w', 7, []byte("abc")).frame('c', 7).
		frame('H', 8, str("/app")).
		frame('R', 9, str("/app/d/f"), u64(10)).b.Bytes()
	for i := 0; i < cases; i++ {
		stream := append([]byte(nil), seed...)
		for n := rng.Intn(8) + 1; n > 0; n-- {
			switch rng.Intn(4) {
			case 0:
				stream[rng.Intn(len(stream))] = byte(rng.Intn(256))
			case 1:
				at := rng.Intn(len(stream))
				stream = append(stream[:at], stream[min(len(stream), at+rng.Intn(16)):]...)
			case 2:
				at := rng.Intn(len(stream))
				stream = append(stream[:at], append([]byte("/../"), stream[at:]...)...)
			default:
				stream = append(stream, byte(rng.Intn(256)))
			}
			if len(stream) == 0 {
				stream = []byte{0}
			}
		}
		sb := newSandbox(t)
		sb.run(t, stream)
		sb.outsideUntouched(t)
	}
}

func newBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 1<<16) }

func TestReplacingAndDeletingFoldersMidStream(t *testing.T) {
	sb := newSandbox(t)
	req := (&request{}).
		frame('B', 1, str("/app")).
		frame('W', 2, str("/app/a/x"), u32(0o644), []byte("1")).
		frame('W', 3, str("/app/b/y"), u32(0o644), []byte("2")).
		frame('L', 4, str("/app/a"), str("b")). // a folder replaced by a link
		frame('D', 5, str("/app/b")).           // a folder deleted
		frame('W', 6, str("/app/c/z"), u32(0o644), []byte("3")).
		frame('W', 7, str("/app/b"), u32(0o644), []byte("now a file")).
		frame('M', 8, str("/app/c/z"), u32(0o700)) // a file replaced by a folder
	replies := sb.run(t, req.b.Bytes())
	for id := uint32(1); id <= 8; id++ {
		if got := replyTo(replies, id); got.op != 'A' {
			t.Fatalf("request %d failed: %q", id, got.body)
		}
	}
	if link, _ := os.Readlink(filepath.Join(sb.root, "app", "a")); link != "b" {
		t.Fatalf("link not made: %q", link)
	}
	if info, err := os.Stat(filepath.Join(sb.root, "app", "c", "z")); err != nil || !info.IsDir() {
		t.Fatalf("folder not made: %v", err)
	}
}

func TestWatchReportsChanges(t *testing.T) {
	sb := newSandbox(t)
	app := filepath.Join(sb.root, "app")
	os.MkdirAll(filepath.Join(app, "pkg"), 0o755)
	rootFD, _ := unix.Open(sb.root, unix.O_PATH|unix.O_DIRECTORY, 0)
	defer unix.Close(rootFD)
	pr, pw := io.Pipe()
	var replies bytes.Buffer
	out := newOutput(&lockedBuffer{b: &replies})
	s := newServer(rootFD, out, func(syscall.Signal) error { return nil }, "")
	done := make(chan struct{})
	go func() { s.run(pr); close(done) }()
	pw.Write((&request{}).frame('B', 1, str("/app")).frame('N', 2, str("/app")).b.Bytes())
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(readLocked(out, &replies), "A") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(filepath.Join(app, "pkg", "util.py"), []byte("x"), 0o644)
	for !strings.Contains(readLocked(out, &replies), "pkg/util.py") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pw.Close()
	<-done
	stopWatches()
	if !strings.Contains(readLocked(out, &replies), "pkg/util.py") {
		t.Fatalf("no change report: %q", replies.String())
	}
}

type lockedBuffer struct{ b *bytes.Buffer }

func (l *lockedBuffer) Write(p []byte) (int, error) { return l.b.Write(p) }

func readLocked(o *output, b *bytes.Buffer) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Flush()
	return b.String()
}

func TestUndoAtCloseRemovesAndRestartsWhenTheClientIsGone(t *testing.T) {
	sb := newSandbox(t)
	replies := sb.run(t, (&request{}).
		frame('B', 1, str("/app")).
		frame('M', 2, str("/app/dbg"), u32(0o755)).
		frame('W', 3, str("/app/dbg/f"), u32(0o644), []byte("x")).
		frame('Y', 4, str("/app/dbg"), u32(1)).
		frame('Y', 5, str("/app"), u32(1)).         // the destination itself: refused
		frame('Y', 6, str("/app/dbg"), u32(9)).     // only SIGHUP
		frame('Y', 7, str("/elsewhere/x"), u32(1)). // outside every destination
		b.Bytes())
	for id, want := range map[uint32]byte{4: 'A', 5: 'E', 6: 'E', 7: 'E'} {
		if replyTo(replies, id).op != want {
			t.Fatalf("reply to %d: %q, want %q", id, replyTo(replies, id).op, want)
		}
	}
	// The stream ended without the client undoing: the agent did.
	if _, err := os.Stat(filepath.Join(sb.root, "app", "dbg")); !os.IsNotExist(err) {
		t.Fatalf("the folder is still there: %v", err)
	}
	if len(sb.signals) != 1 || sb.signals[0] != syscall.SIGHUP {
		t.Fatalf("signals sent: %v", sb.signals)
	}
}

func TestUndoAtCloseIsForgottenWhenTheClientUndidItself(t *testing.T) {
	sb := newSandbox(t)
	sb.run(t, (&request{}).
		frame('B', 1, str("/app")).
		frame('M', 2, str("/app/dbg"), u32(0o755)).
		frame('Y', 3, str("/app/dbg"), u32(1)).
		frame('Y', 4, str(""), u32(0)).
		b.Bytes())
	if _, err := os.Stat(filepath.Join(sb.root, "app", "dbg")); err != nil {
		t.Fatalf("the folder went: %v", err)
	}
	if len(sb.signals) != 0 {
		t.Fatalf("signals sent: %v", sb.signals)
	}
}
