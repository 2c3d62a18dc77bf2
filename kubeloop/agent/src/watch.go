package main

// Change reports for two-way sync: inotify watches every folder under a destination and
// the agent sends coalesced reports ('C' frames carrying the id of the latest request to
// watch it). A report is a list of entries:
//
//	kind u8 | path (u16 + bytes)
//
// kind 0: this path changed; 1: events were lost, list the whole folder again; 2: the
// watch ended (folder replaced, out of watches): re-watch or poll.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	reportPath   = 0
	reportResync = 1
	reportEnded  = 2
	maxReport    = 512 << 10 // one report's size; a larger burst says "resync" instead

	watchMask = unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM |
		unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_ONLYDIR |
		unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
)

type change struct {
	kind byte
	rel  string
}

type watcher struct {
	fd     int
	rootFD int // the destination, opened without following symlinks (owned here)
	id     atomic.Uint32
	dead   atomic.Bool
	mu     sync.Mutex
	dirs   map[int32]string // watch descriptor -> folder relative to the destination
	out    *output
}

// One watcher per destination: asking again re-targets the reports instead of piling up
// inotify instances.
var (
	watchersMu sync.Mutex
	watchers   = map[string]*watcher{}
)

func startWatch(t *tree, id uint32, out *output) error {
	watchersMu.Lock()
	defer watchersMu.Unlock()
	if w, ok := watchers[t.dest]; ok && !w.dead.Load() {
		w.id.Store(id)
		return nil
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	root, err := unix.Openat(t.rootFD, ".", dirFlags, 0)
	if err != nil {
		unix.Close(fd)
		return err
	}
	w := &watcher{fd: fd, rootFD: root, dirs: map[int32]string{}, out: out}
	w.id.Store(id)
	if err := w.addTree(""); err != nil {
		unix.Close(fd)
		unix.Close(root)
		return err
	}
	watchers[t.dest] = w
	changed := make(chan change, 1024)
	go w.read(changed)
	go w.coalesce(changed)
	return nil
}

func stopWatches() {
	watchersMu.Lock()
	defer watchersMu.Unlock()
	for dest, w := range watchers {
		w.dead.Store(true)
		unix.Close(w.fd)
		delete(watchers, dest)
	}
}

// addTree watches folder rel and every folder below it on the same file system.
func (w *watcher) addTree(rel string) error {
	var parts []string
	if rel != "" {
		parts = strings.Split(rel, "/")
	}
	fd, err := walk(w.rootFD, parts, false)
	if err != nil {
		if rel == "" {
			return fmt.Errorf("watch: %w", err)
		}
		return nil // vanished meanwhile: its parent's event reports it
	}
	defer unix.Close(fd)
	return w.addFolder(fd, rel, deviceOf(fd), 0)
}

func (w *watcher) addFolder(fd int, rel string, device uint64, depth int) error {
	if depth > maxDepth {
		return nil
	}
	// Watched through our own descriptor of the folder (opened without following
	// symlinks): the path given to inotify is that descriptor's magic link, so it must be
	// followed (no IN_DONT_FOLLOW).
	wd, err := unix.InotifyAddWatch(w.fd, "/proc/self/fd/"+strconv.Itoa(fd), watchMask)
	if err == unix.ENOSPC {
		// Out of watches (a per-user limit of the node): a partial watch would miss
		// changes silently, so the client is told and polls instead.
		return fmt.Errorf("watch %s: %w (the node's fs.inotify.max_user_watches)", rel, err)
	}
	if err != nil {
		if rel == "" {
			return fmt.Errorf("watch: %w", err)
		}
		return nil
	}
	w.mu.Lock()
	w.dirs[int32(wd)] = rel
	w.mu.Unlock()
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	folder := os.NewFile(uintptr(dup), rel)
	defer folder.Close()
	for {
		names, rerr := folder.Readdirnames(512)
		for _, name := range names {
			var st unix.Stat_t
			if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil ||
				st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Dev != device {
				continue
			}
			child, err := unix.Openat(fd, name, dirFlags, 0)
			if err != nil {
				continue
			}
			sub := name
			if rel != "" {
				sub = rel + "/" + name
			}
			err = w.addFolder(child, sub, device, depth+1)
			unix.Close(child)
			if err != nil {
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			return nil
		}
	}
}

// forget drops the watches of a folder that moved away: if it moved within the tree, its
// new name is watched again on the IN_MOVED_TO that follows.
func (w *watcher) forget(rel string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for wd, dir := range w.dirs {
		if dir == rel || strings.HasPrefix(dir, rel+"/") {
			unix.InotifyRmWatch(w.fd, uint32(wd))
			delete(w.dirs, wd)
		}
	}
}

func (w *watcher) end(changed chan<- change) {
	if w.dead.Swap(true) {
		return
	}
	changed <- change{reportEnded, ""}
	unix.Close(w.fd)
	unix.Close(w.rootFD)
}

func (w *watcher) read(changed chan<- change) {
	defer close(changed)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(w.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			w.end(changed)
			return
		}
		for offset := 0; offset+unix.SizeofInotifyEvent <= n; {
			event := (*unix.InotifyEvent)(unsafe.Pointer(&buf[offset]))
			end := offset + unix.SizeofInotifyEvent + int(event.Len)
			if end > n {
				break
			}
			name := strings.TrimRight(string(buf[offset+unix.SizeofInotifyEvent:end]), "\x00")
			offset = end
			if event.Mask&unix.IN_Q_OVERFLOW != 0 {
				changed <- change{reportResync, ""}
				continue
			}
			w.mu.Lock()
			dir, known := w.dirs[event.Wd]
			w.mu.Unlock()
			if !known {
				continue
			}
			if event.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
				if dir == "" { // the watched folder itself is gone or replaced
					w.end(changed)
					return
				}
				if event.Mask&unix.IN_IGNORED != 0 {
					w.mu.Lock()
					delete(w.dirs, event.Wd)
					w.mu.Unlock()
				}
				continue
			}
			if name == "" || strings.HasPrefix(name, tempPrefix) {
				continue
			}
			rel := name
			if dir != "" {
				rel = dir + "/" + name
			}
			if event.Mask&unix.IN_MOVED_FROM != 0 && event.Mask&unix.IN_ISDIR != 0 {
				w.forget(rel)
			}
			if event.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
				if event.Mask&unix.IN_ISDIR != 0 {
					if w.addTree(rel) != nil { // out of watches: a partial watch would lie
						w.end(changed)
						return
					}
				} else if event.Mask&unix.IN_CREATE != 0 {
					var st unix.Stat_t
					parts := strings.Split(dir, "/")
					if dir == "" {
						parts = nil
					}
					if fd, err := walk(w.rootFD, parts, false); err == nil {
						regular := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
							st.Mode&unix.S_IFMT == unix.S_IFREG
						unix.Close(fd)
						if regular {
							continue // reported when its writer closes it
						}
					}
				}
			}
			changed <- change{reportPath, rel}
		}
	}
}

func (w *watcher) coalesce(changed <-chan change) {
	for first := range changed {
		batch := map[change]bool{first: true}
		size := len(first.rel)
		deadline := time.After(10 * time.Millisecond)
	collect:
		for {
			select {
			case c, open := <-changed:
				if !open {
					break collect
				}
				batch[c] = true
				size += len(c.rel) + 3
			case <-deadline:
				break collect
			}
		}
		var body []byte
		if size > maxReport {
			body = append(body, reportResync)
			body = appendString(body, "")
			if batch[change{reportEnded, ""}] {
				body = append(body, reportEnded)
				body = appendString(body, "")
			}
		} else {
			for c := range batch {
				body = append(body, c.kind)
				body = appendString(body, c.rel)
			}
		}
		w.out.send('C', w.id.Load(), body)
	}
}
