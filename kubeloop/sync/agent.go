// kubeloop-agent: the in-cluster end of kubeloop's file sync.
//
// It runs as an ephemeral container that shares the target container's process
// namespace, so the target's files are reachable under /proc/1/root: nothing is added to
// the target image (no tar, shell or Python needed there).
//
//	kubeloop-agent idle                      keep the ephemeral container alive
//	kubeloop-agent serve ROOT                speak the sync protocol on stdin/stdout
//	kubeloop-agent install DEST              copy itself to DEST (an init container)
//	kubeloop-agent supervise -- CMD ARGS...  run CMD as a child: SIGHUP restarts the child
//	                                         (the container and its synced files stay),
//	                                         SIGTERM/SIGINT stop it and exit
//
// Frames (big-endian): op byte, u32 seq, u16 path length, path, u64 payload length,
// payload. Replies: 'A' seq (done), 'E' seq + message, 'H' seq + listing, 'F' seq +
// file content, and 'C' with the seq of a watch request: paths changed under that folder.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

var (
	out     = bufio.NewWriterSize(os.Stdout, 1<<16)
	outLock sync.Mutex
	pending bool
)

// flushLoop sends buffered replies at most every 2 ms: a burst of thousands of writes then
// costs a few hundred small frames back through the API server, not thousands, and a
// lone save still gets its reply within 2 ms.
func flushLoop() {
	for range time.Tick(2 * time.Millisecond) {
		outLock.Lock()
		if pending {
			out.Flush()
			pending = false
		}
		outLock.Unlock()
	}
}

func reply(op byte, seq uint32, body []byte) {
	outLock.Lock()
	defer outLock.Unlock()
	pending = true
	header := make([]byte, 9)
	header[0] = op
	binary.BigEndian.PutUint32(header[1:], seq)
	binary.BigEndian.PutUint32(header[5:], uint32(len(body)))
	out.Write(header)
	out.Write(body)
}

func safeJoin(root, rel string) (string, error) {
	clean := filepath.Clean("/" + rel)
	if strings.Contains(clean, "\x00") {
		return "", fmt.Errorf("bad path %q", rel)
	}
	return filepath.Join(root, clean), nil
}

// Folders known to exist, so a burst of files in one folder costs one mkdir check.
var knownDirs = map[string]bool{}

func ensureDir(dir string) error {
	if knownDirs[dir] {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	knownDirs[dir] = true
	return nil
}

func writeFile(target string, mode uint32, size uint64, in io.Reader) error {
	if err := ensureDir(filepath.Dir(target)); err != nil {
		io.CopyN(io.Discard, in, int64(size))
		return err
	}
	perm := fs.FileMode(mode & 0o7777)
	existing, statErr := os.Lstat(target)
	// A new file is written in place; a file being replaced goes through a temporary
	// file and a rename, so the app never reads half a file.
	path := target
	if statErr == nil {
		path = filepath.Join(filepath.Dir(target), ".kubeloop-"+filepath.Base(target))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		io.CopyN(io.Discard, in, int64(size))
		return err
	}
	_, copyErr := io.CopyN(f, in, int64(size))
	f.Close()
	if copyErr != nil {
		os.Remove(path)
		return copyErr
	}
	if statErr != nil {
		return nil
	}
	os.Chmod(path, perm) // O_CREATE does not change the mode of a leftover temp file
	// Keep the owner of the file being replaced, so the app can still write it.
	if sys, ok := existing.Sys().(*syscall.Stat_t); ok {
		os.Lchown(path, int(sys.Uid), int(sys.Gid))
	}
	if existing.IsDir() {
		os.RemoveAll(target)
	}
	return os.Rename(path, target)
}

func device(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return 0
	}
	return uint64(st.Dev)
}

// listing describes everything under root, one line per entry, paths relative to root.
func listing(root string) []byte {
	var b strings.Builder
	walkInto(&b, root, "")
	return []byte(b.String())
}

// listingOf describes the named paths under root and, for folders, what is in them;
// paths that do not exist are left out (the client reads that as deleted).
func listingOf(root string, rels []string) []byte {
	var b strings.Builder
	for _, rel := range rels {
		path, err := safeJoin(root, rel)
		if err != nil || rel == "" {
			continue
		}
		rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
		info, err := os.Lstat(path)
		if err != nil {
			continue
		}
		describe(&b, path, rel, fs.FileInfoToDirEntry(info))
		if info.IsDir() {
			walkInto(&b, path, rel)
		}
	}
	return []byte(b.String())
}

func walkInto(b *strings.Builder, dir, prefix string) {
	rootDevice := device(dir)
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return nil
		}
		// Never cross into another filesystem (/proc, /sys, volumes): a sync of "/"
		// must not try to hash the kernel's files.
		if d.IsDir() && device(path) != rootDevice {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(dir, path)
		if prefix != "" {
			rel = prefix + "/" + rel
		}
		describe(b, path, rel, d)
		return nil
	})
}

func describe(b *strings.Builder, path, rel string, d fs.DirEntry) {
	info, err := d.Info()
	if err != nil {
		return
	}
	switch {
	case d.Type()&fs.ModeSymlink != 0:
		link, _ := os.Readlink(path)
		fmt.Fprintf(b, "L\t%s\t%s\n", rel, link)
	case d.IsDir():
		fmt.Fprintf(b, "D\t%s\t%o\n", rel, info.Mode().Perm())
	case d.Type().IsRegular():
		f, err := os.Open(path)
		if err != nil {
			return
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		fmt.Fprintf(b, "F\t%s\t%o\t%s\n", rel, info.Mode().Perm(), hex.EncodeToString(h.Sum(nil)))
	}
}

// --- change notification (two-way sync) ----------------------------------------------

const watchMask = syscall.IN_CLOSE_WRITE | syscall.IN_CREATE | syscall.IN_DELETE |
	syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_ATTRIB | syscall.IN_ONLYDIR |
	syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF

// Lines with a meaning of their own in a change report (paths are never empty or start
// with these characters and end there).
const (
	reportResync = "*" // events were lost: list the whole folder again
	reportEnded  = "!" // the watch ended (folder replaced, out of watches): poll or re-watch
)

// watcher reports paths under root that change, as 'C' frames carrying the sequence
// number of the latest request to watch root, coalesced over 10 ms. The agent's own
// temporary files are not reported; its finished writes are, and the client recognises
// them by content.
type watcher struct {
	fd   int
	root string
	seq  atomic.Uint32
	dead atomic.Bool
	dirs map[int32]string // watch descriptor -> folder, relative to root (read goroutine)
}

// One watcher per folder, so a client that asks again (after an error, or a second rule
// on the same folder) re-targets the reports instead of piling up inotify instances.
var watchers = map[string]*watcher{}

func startWatch(root string, seq uint32) error {
	if w, ok := watchers[root]; ok && !w.dead.Load() {
		w.seq.Store(seq)
		return nil
	}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	w := &watcher{fd: fd, root: root, dirs: map[int32]string{}}
	w.seq.Store(seq)
	if err := w.addTree(""); err != nil {
		syscall.Close(fd)
		return err
	}
	watchers[root] = w
	changed := make(chan string, 1024)
	go w.read(changed)
	go w.coalesce(changed)
	return nil
}

func (w *watcher) addTree(rel string) error {
	top := filepath.Join(w.root, rel)
	rootDevice := device(top)
	return filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == top && rel == "" {
				return fmt.Errorf("watch %s: %w", path, err)
			}
			return nil // vanished meanwhile: its parent's event reports it
		}
		if !d.IsDir() {
			return nil
		}
		if path != top && device(path) != rootDevice {
			return filepath.SkipDir
		}
		wd, err := syscall.InotifyAddWatch(w.fd, path, watchMask)
		if err == syscall.ENOSPC {
			// Out of watches (a per-user limit of the node): a partial watch would miss
			// changes silently, so the client is told and polls instead.
			return fmt.Errorf("watch %s: %w (the node's fs.inotify.max_user_watches)", path, err)
		}
		if err != nil {
			if path == top && rel == "" {
				return fmt.Errorf("watch %s: %w", path, err)
			}
			return nil // vanished or unreadable meanwhile
		}
		sub, _ := filepath.Rel(w.root, path)
		if sub == "." {
			sub = ""
		}
		w.dirs[int32(wd)] = sub
		return nil
	})
}

// forget drops the watches of a folder that left (moved away): if it moved within the
// tree, its new name is watched again on the IN_MOVED_TO that follows.
func (w *watcher) forget(rel string) {
	for wd, dir := range w.dirs {
		if dir == rel || strings.HasPrefix(dir, rel+"/") {
			syscall.InotifyRmWatch(w.fd, uint32(wd))
			delete(w.dirs, wd)
		}
	}
}

// end stops the watcher and tells the client, which then re-watches or polls.
func (w *watcher) end(changed chan<- string) {
	w.dead.Store(true)
	changed <- reportEnded
	syscall.Close(w.fd)
}

func (w *watcher) read(changed chan<- string) {
	defer close(changed)
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(w.fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			if !w.dead.Load() {
				w.end(changed)
			}
			return
		}
		for offset := 0; offset+syscall.SizeofInotifyEvent <= n; {
			event := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[offset]))
			nameBytes := buf[offset+syscall.SizeofInotifyEvent : offset+syscall.SizeofInotifyEvent+int(event.Len)]
			offset += syscall.SizeofInotifyEvent + int(event.Len)
			name := strings.TrimRight(string(nameBytes), "\x00")
			if event.Mask&syscall.IN_Q_OVERFLOW != 0 {
				changed <- reportResync
				continue
			}
			dir, known := w.dirs[event.Wd]
			if !known {
				continue
			}
			if event.Mask&(syscall.IN_IGNORED|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0 {
				if dir == "" { // the watched folder itself is gone or replaced
					w.end(changed)
					return
				}
				if event.Mask&syscall.IN_IGNORED != 0 {
					delete(w.dirs, event.Wd)
				}
				continue
			}
			if name == "" || strings.HasPrefix(name, ".kubeloop-") {
				continue
			}
			rel := name
			if dir != "" {
				rel = dir + "/" + name
			}
			if event.Mask&syscall.IN_MOVED_FROM != 0 && event.Mask&syscall.IN_ISDIR != 0 {
				w.forget(rel)
			}
			if event.Mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0 {
				info, err := os.Lstat(filepath.Join(w.root, rel))
				if err == nil && info.IsDir() {
					if w.addTree(rel) != nil { // out of watches: a partial watch would lie
						w.end(changed)
						return
					}
				} else if err == nil && info.Mode().IsRegular() && event.Mask&syscall.IN_CREATE != 0 {
					continue // reported when its writer closes it
				}
			}
			changed <- rel
		}
	}
}

func (w *watcher) coalesce(changed <-chan string) {
	for first := range changed {
		batch := map[string]bool{first: true}
		deadline := time.After(10 * time.Millisecond)
	collect:
		for {
			select {
			case rel, open := <-changed:
				if !open {
					break collect
				}
				batch[rel] = true
			case <-deadline:
				break collect
			}
		}
		var b strings.Builder
		for rel := range batch {
			b.WriteString(rel)
			b.WriteByte('\n')
		}
		reply('C', w.seq.Load(), []byte(b.String()))
	}
}

func serve(root string) {
	syscall.Umask(0) // modes arrive exact from the client
	// Enter the target's root once: every later path then resolves directly instead of
	// through the /proc/1/root magic link, which costs a lot per file in a large sync.
	if root != "/" {
		if err := syscall.Chroot(root); err == nil {
			os.Chdir("/")
			root = "/"
		}
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	header := make([]byte, 7)
	go flushLoop()
	for {
		if _, err := io.ReadFull(in, header); err != nil {
			outLock.Lock()
			out.Flush()
			outLock.Unlock()
			return
		}
		op := header[0]
		seq := binary.BigEndian.Uint32(header[1:])
		pathLen := binary.BigEndian.Uint16(header[5:])
		rawPath := make([]byte, pathLen)
		io.ReadFull(in, rawPath)
		var sizeBuf [8]byte
		io.ReadFull(in, sizeBuf[:])
		size := binary.BigEndian.Uint64(sizeBuf[:])
		target, err := safeJoin(root, string(rawPath))
		if err != nil {
			io.CopyN(io.Discard, in, int64(size))
			reply('E', seq, []byte(err.Error()))
			continue
		}
		switch op {
		case 'W': // payload: u32 mode, then the content
			var modeBuf [4]byte
			io.ReadFull(in, modeBuf[:])
			err = writeFile(target, binary.BigEndian.Uint32(modeBuf[:]), size-4, in)
		case 'L': // payload: link target
			link := make([]byte, size)
			io.ReadFull(in, link)
			ensureDir(filepath.Dir(target))
			os.RemoveAll(target)
			delete(knownDirs, target)
			err = os.Symlink(string(link), target)
		case 'M': // payload: u32 mode
			var modeBuf [4]byte
			io.ReadFull(in, modeBuf[:])
			err = os.MkdirAll(target, fs.FileMode(binary.BigEndian.Uint32(modeBuf[:])&0o7777))
			if err == nil {
				os.Chmod(target, fs.FileMode(binary.BigEndian.Uint32(modeBuf[:])&0o7777))
				knownDirs[target] = true
			}
		case 'D':
			io.CopyN(io.Discard, in, int64(size))
			err = os.RemoveAll(target)
			knownDirs = map[string]bool{}
		case 'H':
			io.CopyN(io.Discard, in, int64(size))
			reply('H', seq, listing(target))
			continue
		case 'S': // payload: relative paths, one per line; reply: their listing
			names := make([]byte, size)
			io.ReadFull(in, names)
			// Only the separators are cut: a name may start or end with a space.
			reply('H', seq, listingOf(target, strings.Split(strings.TrimSuffix(string(names), "\n"), "\n")))
			continue
		case 'N': // report changes under the path from now on (see watcher)
			io.CopyN(io.Discard, in, int64(size))
			err = startWatch(target, seq)
		case 'R': // read a file back (two-way sync and tests)
			io.CopyN(io.Discard, in, int64(size))
			data, readErr := os.ReadFile(target)
			if readErr != nil {
				reply('E', seq, []byte(readErr.Error()))
			} else {
				reply('F', seq, data)
			}
			continue
		case 'K': // payload: signal number, sent to the target's process 1
			var sigBuf [4]byte
			io.ReadFull(in, sigBuf[:])
			err = syscall.Kill(1, syscall.Signal(binary.BigEndian.Uint32(sigBuf[:])))
		default:
			io.CopyN(io.Discard, in, int64(size))
			err = fmt.Errorf("unknown op %q", op)
		}
		if err != nil {
			reply('E', seq, []byte(err.Error()))
		} else {
			reply('A', seq, nil)
		}
	}
}

func install(dest string) {
	self, err := os.Executable()
	if err == nil {
		var data []byte
		if data, err = os.ReadFile(self); err == nil {
			os.MkdirAll(filepath.Dir(dest), 0o755)
			err = os.WriteFile(dest, data, 0o755)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "install:", err)
		os.Exit(1)
	}
}

// supervise runs the app as a child so that a restart replaces the process, not the
// container (which would lose the synced files). A child that exits on its own is not
// restarted until the next change: a crash on a half-written file must not loop.
func supervise(argv []string) {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	var child *exec.Cmd
	exited := make(chan error, 1)
	start := func() {
		child = exec.Command(argv[0], argv[1:]...)
		child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
		child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "kubeloop supervisor: cannot start:", err)
			child = nil
			return
		}
		go func(c *exec.Cmd) { exited <- c.Wait() }(child)
	}
	stop := func() {
		if child == nil {
			return
		}
		syscall.Kill(-child.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-child.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		child = nil
	}
	start()
	for {
		select {
		case err := <-exited:
			fmt.Fprintf(os.Stderr, "kubeloop supervisor: process exited (%v); waiting for a change to restart it\n", err)
			child = nil
		case sig := <-signals:
			switch sig {
			case syscall.SIGHUP:
				stop()
				start()
			case syscall.SIGTERM, syscall.SIGINT:
				stop()
				os.Exit(0)
			}
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubeloop-agent idle | serve ROOT")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "idle":
		for {
			time.Sleep(time.Hour)
		}
	case "serve":
		root := "/proc/1/root"
		if len(os.Args) > 2 {
			root = os.Args[2]
		}
		serve(root)
	case "install":
		install(os.Args[2])
	case "supervise":
		argv := os.Args[2:]
		if len(argv) > 0 && argv[0] == "--" {
			argv = argv[1:]
		}
		if len(argv) == 0 {
			fmt.Fprintln(os.Stderr, "supervise: no command")
			os.Exit(2)
		}
		supervise(argv)
	case "version":
		fmt.Println("kubeloop-agent 1")
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
