package main

// File operations confined to a destination folder.
//
// The container is not trusted: its app may swap any folder under the destination for a
// symlink to /etc while a sync runs. So no path is ever resolved by the kernel in one go.
// Every component is opened relative to its parent's descriptor with O_NOFOLLOW, new
// files are created with O_EXCL|O_NOFOLLOW under random names, and renames and deletes
// use the parent's descriptor. A symlink met on the way is an error, never followed.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	dirFlags     = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	maxDepth     = 256 // deeper trees are refused rather than recursed into
	maxCachedFDs = 256
	tempPrefix   = ".kubeloop-"
)

var errSymlinkInPath = errors.New("a folder on the way is a symlink (not followed)")

// checkRel validates a path relative to a destination: no empty, "." or ".." component,
// no NUL, not absolute. "" names the destination itself.
func checkRel(rel string) error {
	if rel == "" {
		return nil
	}
	if strings.HasPrefix(rel, "/") || strings.ContainsRune(rel, 0) {
		return fmt.Errorf("bad path %q", rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("bad path %q", rel)
		}
	}
	return nil
}

// checkDest validates a destination: absolute, clean, and never "/" (a sync of "/" would
// delete everything in the container that is not local).
func checkDest(dest string) error {
	if !strings.HasPrefix(dest, "/") || path.Clean(dest) != dest || dest == "/" ||
		strings.ContainsRune(dest, 0) || len(dest) > maxString {
		return fmt.Errorf("refusing destination %q: it must be an absolute, clean path other than /", dest)
	}
	return nil
}

// tree is one destination folder, reached from the container's root without following
// symlinks, with a small cache of opened folders.
type tree struct {
	dest   string
	top    int // the container's root the destination was reached from
	rootFD int
	fds    map[string]int // folder (relative to dest) -> O_PATH descriptor
	// Descriptors dropped from the cache during a request, closed when the next one
	// starts: the request may still be using one of them.
	retired []int
}

// openTree opens (creating it if asked) dest below rootFD, refusing symlinks on the way.
func openTree(rootFD int, dest string, create bool) (*tree, error) {
	if err := checkDest(dest); err != nil {
		return nil, err
	}
	fd, err := walk(rootFD, strings.Split(strings.TrimPrefix(dest, "/"), "/"), create)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dest, err)
	}
	return &tree{dest: dest, top: rootFD, rootFD: fd, fds: map[string]int{"": fd}}, nil
}

// replaced tells whether dest now names another folder than the one this tree holds
// (the app renamed it away and made a new one): the tree must be opened again.
func (t *tree) replaced() bool {
	fd, err := walk(t.top, strings.Split(strings.TrimPrefix(t.dest, "/"), "/"), false)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	var now, held unix.Stat_t
	if unix.Fstat(fd, &now) != nil || unix.Fstat(t.rootFD, &held) != nil {
		return true
	}
	return now.Dev != held.Dev || now.Ino != held.Ino
}

// walk opens parts one by one below fd (never following a symlink), making missing
// folders when create is set. The returned descriptor is new; fd stays open.
func walk(fd int, parts []string, create bool) (int, error) {
	current, err := unix.Openat(fd, ".", dirFlags, 0)
	if err != nil {
		return -1, err
	}
	for _, part := range parts {
		next, err := unix.Openat(current, part, dirFlags, 0)
		if err == unix.ENOENT && create {
			if err = unix.Mkdirat(current, part, 0o755); err == nil || err == unix.EEXIST {
				next, err = unix.Openat(current, part, dirFlags, 0)
			}
		}
		if err == unix.ELOOP || err == unix.ENOTDIR {
			err = fmt.Errorf("%s: %w", part, errSymlinkInPath)
		}
		unix.Close(current)
		if err != nil {
			return -1, err
		}
		current = next
	}
	return current, nil
}

func (t *tree) close() {
	t.release()
	for _, fd := range t.fds {
		unix.Close(fd)
	}
	t.fds = map[string]int{}
}

// forget drops cached descriptors: after a delete or a replace, a cached folder may be
// gone or be another one.
func (t *tree) forget() {
	for rel, fd := range t.fds {
		if rel != "" {
			t.retired = append(t.retired, fd)
			delete(t.fds, rel)
		}
	}
}

// release closes the descriptors forgotten during the last request.
func (t *tree) release() {
	for _, fd := range t.retired {
		unix.Close(fd)
	}
	t.retired = nil
}

// dir returns a descriptor for folder rel (cached; do not close it).
func (t *tree) dir(rel string, create bool) (int, error) {
	if fd, ok := t.fds[rel]; ok {
		return fd, nil
	}
	if len(t.fds) > maxCachedFDs {
		t.forget()
	}
	parent, base := path.Split(rel)
	pfd, err := t.dir(strings.TrimSuffix(parent, "/"), create)
	if err != nil {
		return -1, err
	}
	fd, err := walk(pfd, []string{base}, create)
	if err != nil {
		return -1, err
	}
	t.fds[rel] = fd
	return fd, nil
}

// parent returns the folder descriptor and the last component of rel (not "").
func (t *tree) parent(rel string, create bool) (int, string, error) {
	if err := checkRel(rel); err != nil {
		return -1, "", err
	}
	if rel == "" {
		return -1, "", errors.New("this operation needs a path below the destination")
	}
	if strings.Count(rel, "/") >= maxDepth {
		return -1, "", fmt.Errorf("path %q is deeper than %d folders", rel, maxDepth)
	}
	dir, base := path.Split(rel)
	fd, err := t.dir(strings.TrimSuffix(dir, "/"), create)
	return fd, base, err
}

func randomName() string {
	var b [8]byte
	rand.Read(b[:])
	return tempPrefix + hex.EncodeToString(b[:])
}

// pendingWrite is a file being written: a temporary file in its folder, renamed over the
// target when complete, so the app never reads half a file.
type pendingWrite struct {
	tree       *tree
	parent     int
	ownsParent bool
	base       string
	temp       string
	file       *os.File
	existing   *unix.Stat_t
	perm       uint32
	err        error
}

// beginWrite starts a file; a write that spans requests (streamed) holds its own
// descriptor of the folder, since the tree's cache may drop its copy meanwhile.
func (t *tree) beginWrite(rel string, mode uint32, spansRequests bool) (*pendingWrite, error) {
	pfd, base, err := t.parent(rel, true)
	if err != nil {
		return nil, err
	}
	if spansRequests {
		if pfd, err = unix.FcntlInt(uintptr(pfd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
			return nil, err
		}
	}
	w := &pendingWrite{tree: t, parent: pfd, ownsParent: spansRequests, base: base, perm: mode & 0o7777}
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		w.existing = &st
	}
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	name := base
	if w.existing != nil {
		name = randomName()
	}
	fd, err := unix.Openat(pfd, name, flags, w.perm)
	if err == unix.EEXIST && w.existing == nil { // created meanwhile: replace it instead
		var st unix.Stat_t
		if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			w.existing = &st
		}
		name = randomName()
		fd, err = unix.Openat(pfd, name, flags, w.perm)
	}
	if err != nil {
		w.release()
		return nil, err
	}
	if name != base {
		w.temp = name
	}
	w.file = os.NewFile(uintptr(fd), name)
	return w, nil
}

func (w *pendingWrite) write(data []byte) {
	if w.err == nil {
		_, w.err = w.file.Write(data)
	}
}

// abort drops a write that will not be committed (the stream ended or broke).
func (w *pendingWrite) abort() {
	w.discard()
	w.release()
}

func (w *pendingWrite) release() {
	if w.ownsParent {
		unix.Close(w.parent)
	}
}

func (w *pendingWrite) discard() {
	w.file.Close()
	if w.temp != "" {
		unix.Unlinkat(w.parent, w.temp, 0)
	} else {
		unix.Unlinkat(w.parent, w.base, 0)
	}
}

func (w *pendingWrite) commit() error {
	err := w.finish()
	w.release()
	return err
}

func (w *pendingWrite) finish() error {
	if w.err != nil {
		w.discard()
		return w.err
	}
	fd := int(w.file.Fd())
	if w.existing != nil && w.existing.Mode&unix.S_IFMT == unix.S_IFREG {
		// Keep the owner of the file being replaced, so the app can still write it.
		unix.Fchown(fd, int(w.existing.Uid), int(w.existing.Gid))
	}
	// The file is new (O_EXCL) and the umask is 0, so it has its mode already; only
	// set-id bits, which a change of owner clears, are set again.
	if w.perm&0o6000 != 0 {
		unix.Fchmod(fd, w.perm)
	}
	if err := w.file.Close(); err != nil {
		w.discard()
		return err
	}
	if w.temp == "" {
		return nil
	}
	if w.existing != nil && w.existing.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := removeAt(w.parent, w.base, 0); err != nil {
			unix.Unlinkat(w.parent, w.temp, 0)
			return err
		}
		w.tree.forget()
	}
	if err := unix.Renameat(w.parent, w.temp, w.parent, w.base); err != nil {
		unix.Unlinkat(w.parent, w.temp, 0)
		return err
	}
	return nil
}

func (t *tree) writeFile(rel string, mode uint32, data []byte) error {
	w, err := t.beginWrite(rel, mode, false)
	if err != nil {
		return err
	}
	w.write(data)
	return w.commit()
}

func (t *tree) symlink(rel, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return fmt.Errorf("bad link target %q", target)
	}
	pfd, base, err := t.parent(rel, true)
	if err != nil {
		return err
	}
	temp := randomName()
	if err := unix.Symlinkat(target, pfd, temp); err != nil {
		return err
	}
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := removeAt(pfd, base, 0); err != nil {
			unix.Unlinkat(pfd, temp, 0)
			return err
		}
		t.forget()
	}
	if err := unix.Renameat(pfd, temp, pfd, base); err != nil {
		unix.Unlinkat(pfd, temp, 0)
		return err
	}
	return nil
}

func (t *tree) mkdir(rel string, mode uint32) error {
	fd, err := t.dir(rel, true)
	if err != nil {
		// A file or link where a folder should be: replace it.
		pfd, base, perr := t.parent(rel, true)
		if perr != nil {
			return err
		}
		if rerr := removeAt(pfd, base, 0); rerr != nil {
			return err
		}
		t.forget()
		if fd, err = t.dir(rel, true); err != nil {
			return err
		}
	}
	// O_PATH descriptors cannot be chmodded; reopen the folder itself (still no follow).
	real, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // a folder we may not read keeps its mode
	}
	defer unix.Close(real)
	return unix.Fchmod(real, mode&0o7777)
}

func (t *tree) remove(rel string) error {
	pfd, base, err := t.parent(rel, false)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	t.forget()
	return removeAt(pfd, base, 0)
}

// removeAt deletes name in folder dirfd and, for a folder, everything in it, without
// following any symlink.
func removeAt(dirfd int, name string, depth int) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	if depth > maxDepth {
		return fmt.Errorf("%s: folders nested deeper than %d", name, maxDepth)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	folder := os.NewFile(uintptr(fd), name)
	for {
		names, rerr := folder.Readdirnames(256)
		for _, child := range names {
			if err := removeAt(fd, child, depth+1); err != nil {
				folder.Close()
				return err
			}
		}
		if rerr == io.EOF || len(names) == 0 {
			break
		}
		if rerr != nil {
			folder.Close()
			return rerr
		}
	}
	folder.Close()
	err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// openRead opens a regular file below the destination for reading, without following
// a symlink anywhere on the way.
func (t *tree) openRead(rel string) (*os.File, int64, error) {
	pfd, base, err := t.parent(rel, false)
	if err != nil {
		return nil, 0, err
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("%s is not a regular file", rel)
	}
	return os.NewFile(uintptr(fd), base), st.Size, nil
}
