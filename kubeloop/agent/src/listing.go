package main

// Listings describe what is under a destination, one entry per file, folder or symlink:
//
//	kind u8 ('F' 'D' 'L') | mode u32 | name (u16 + bytes) | digest (u16 + bytes)
//
// The digest is the SHA-256 of a file's content (hex), a symlink's target, or empty.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

const maxListing = 2_000_000 // entries in one listing: more is refused, never truncated

type lister struct {
	out     []byte
	entries int
	full    bool
}

func (l *lister) add(kind byte, mode uint32, name, digest string) {
	if l.entries >= maxListing {
		l.full = true
		return
	}
	l.entries++
	l.out = append(l.out, kind)
	l.out = binary.BigEndian.AppendUint32(l.out, mode)
	l.out = appendString(l.out, name)
	l.out = appendString(l.out, digest)
}

// describe adds the entry name (in folder dirfd) as rel.
func (l *lister) describe(dirfd int, name, rel string, st *unix.Stat_t) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, maxString)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err == nil {
			l.add('L', 0, rel, string(buf[:n]))
		}
	case unix.S_IFDIR:
		l.add('D', st.Mode&0o7777, rel, "")
	case unix.S_IFREG:
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return
		}
		file := os.NewFile(uintptr(fd), name)
		h := sha256.New()
		io.Copy(h, file)
		file.Close()
		l.add('F', st.Mode&0o7777, rel, hex.EncodeToString(h.Sum(nil)))
	}
}

// walkInto lists everything in folder fd (named prefix) recursively, staying on one
// file system (a sync of a folder holding /proc or a volume must not hash those).
func (l *lister) walkInto(fd int, prefix string, device uint64, depth int) {
	if depth > maxDepth || l.full {
		return
	}
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	folder := os.NewFile(uintptr(dup), prefix)
	defer folder.Close()
	for {
		names, err := folder.Readdirnames(512)
		for _, name := range names {
			if len(name) >= len(tempPrefix) && name[:len(tempPrefix)] == tempPrefix {
				continue // our own temporary files
			}
			var st unix.Stat_t
			if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			rel := name
			if prefix != "" {
				rel = prefix + "/" + name
			}
			l.describe(fd, name, rel, &st)
			if st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == device {
				child, err := unix.Openat(fd, name, dirFlags, 0)
				if err == nil {
					l.walkInto(child, rel, device, depth+1)
					unix.Close(child)
				}
			}
		}
		if err != nil || len(names) == 0 {
			return
		}
	}
}

func deviceOf(fd int) uint64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Dev
}

// listAll lists the whole destination.
func (t *tree) listAll() ([]byte, bool) {
	l := &lister{}
	l.walkInto(t.rootFD, "", deviceOf(t.rootFD), 0)
	return l.out, !l.full
}

// listSome lists the named paths and, for folders, what is in them; a path that does not
// exist (or is not valid) is left out, which the client reads as deleted.
func (t *tree) listSome(rels []string) ([]byte, bool) {
	l := &lister{}
	device := deviceOf(t.rootFD)
	for _, rel := range rels {
		if rel == "" || checkRel(rel) != nil {
			continue
		}
		pfd, base, err := t.parent(rel, false)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		l.describe(pfd, base, rel, &st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == device {
			if fd, err := unix.Openat(pfd, base, dirFlags, 0); err == nil {
				l.walkInto(fd, path.Clean(rel), device, 0)
				unix.Close(fd)
			}
		}
	}
	return l.out, !l.full
}
