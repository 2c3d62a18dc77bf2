// kubeloop-agent: the in-cluster end of kubeloop.
//
// It runs as an ephemeral container that shares the target container's process
// namespace, so the target's files are reachable under /proc/<pid>/root: nothing is
// added to the target image (no tar, shell or Python needed there).
//
//	kubeloop-agent idle [--router NAME]          keep the ephemeral container alive (and
//	                                             route bridged ports: router.go)
//	kubeloop-agent serve [--container-id ID] [--router NAME]
//	                                             speak the protocol (serve.go) on stdin/stdout
//	kubeloop-agent install DEST                  copy itself to DEST (an init container)
//	kubeloop-agent supervise -- CMD ARGS...      run CMD as a child: SIGHUP restarts the
//	                                             child (the container and its synced files
//	                                             stay), SIGTERM/SIGINT stop it and exit
//	kubeloop-agent version
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// limitSelf keeps the agent small beside the app: Kubernetes allows no resources on an
// ephemeral container, so the agent caps itself (every buffer is bounded as well).
func limitSelf() {
	debug.SetMemoryLimit(96 << 20)
	runtime.GOMAXPROCS(2)
	unix.Setpriority(unix.PRIO_PROCESS, 0, 10)
}

// targetPID finds the target container's main process: the lowest pid whose cgroup names
// the container, or 1 (the container's own pid namespace) when no id is given.
func targetPID(containerID string) (int, error) {
	if containerID == "" {
		return 1, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	best := 0
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cgroup, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err == nil && strings.Contains(string(cgroup), containerID) && (best == 0 || pid < best) {
			best = pid
		}
	}
	if best == 0 {
		return 1, nil // an unexpected cgroup layout: the shared namespace's first process
	}
	return best, nil
}

func serveCommand(args []string) {
	limitSelf()
	containerID, asRoot, netOnly, localRoot, router := "", false, false, "", ""
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--root": // serve a local folder as the container's root (tests, benchmarks)
			if i+1 < len(args) {
				localRoot = args[i+1]
				i++
			}
		case "--container-id":
			if i+1 < len(args) {
				containerID = args[i+1]
				i++
			}
		case "--router": // the bridge router's name (router.go)
			if i+1 < len(args) {
				router = args[i+1]
				i++
			}
		case "--as-root":
			asRoot = true
		case "--net-only": // the bridge's agent: the pod's network, none of the app's files
			netOnly = true
		}
	}
	if netOnly {
		serveOn(-1, func(syscall.Signal) error { return errors.New("not available") }, router)
		return
	}
	if localRoot != "" {
		rootFD, err := unix.Open(localRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			fail("open %s: %v", localRoot, err)
		}
		unix.Umask(0)
		serveOn(rootFD, func(syscall.Signal) error { return nil }, router)
		return
	}
	pid, err := targetPID(containerID)
	if err != nil {
		fail("cannot find the target process: %v", err)
	}
	if !asRoot {
		if err := becomeApp(pid); err != nil {
			fail("cannot take the app's identity: %v", err)
		}
	}
	// The target's root, as a descriptor every path is resolved from, one component at a
	// time and never through a symlink (tree.go). No chroot: it would need a capability
	// that an agent running as the app's own (non-root) user does not have.
	rootFD, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		fail("cannot reach the target container's files (/proc/%d/root) as the app's user: %v", pid, err)
	}
	unix.Umask(0) // modes arrive exact from the client
	serveOn(rootFD, func(sig syscall.Signal) error { return syscall.Kill(pid, sig) }, router)
}

func serveOn(rootFD int, signal func(syscall.Signal) error, router string) {
	out := newOutput(os.Stdout)
	s := newServer(rootFD, out, signal, router)
	err := s.run(os.Stdin)
	s.close()
	stopWatches()
	out.flush()
	if err != nil {
		fail("%v", err)
	}
}

// becomeApp gives this process the target process' user, group and groups: it can then
// reach the app's files (the kernel lets a process see into another of the same user)
// and do exactly what the app could do there, nothing more. A root app's agent stays
// root with the container runtime's default capabilities, like the app.
func becomeApp(pid int) error {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	ids := map[string][]int{}
	for _, line := range strings.Split(string(status), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || (key != "Uid" && key != "Gid" && key != "Groups") {
			continue
		}
		for _, field := range strings.Fields(value) {
			n, err := strconv.Atoi(field)
			if err != nil {
				return fmt.Errorf("bad %s line in /proc/%d/status", key, pid)
			}
			ids[key] = append(ids[key], n)
		}
	}
	if len(ids["Uid"]) < 1 || len(ids["Gid"]) < 1 {
		return fmt.Errorf("no Uid/Gid in /proc/%d/status", pid)
	}
	uid, gid := ids["Uid"][0], ids["Gid"][0]
	if uid == os.Getuid() && gid == os.Getgid() {
		return nil
	}
	// The syscall package applies these to every thread of the process.
	if err := syscall.Setgroups(ids["Groups"]); err != nil {
		return err
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return err
	}
	return syscall.Setresuid(uid, uid, uid)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kubeloop-agent: "+format+"\n", args...)
	os.Exit(1)
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
		fail("install: %v", err)
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
		command, env := withDebugger(argv, os.Environ())
		child = exec.Command(command[0], command[1:]...)
		child.Env = env
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
		fmt.Fprintln(os.Stderr, "usage: kubeloop-agent idle | serve | install DEST | supervise -- CMD...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "idle":
		if len(os.Args) == 4 && os.Args[2] == "--router" {
			go runRouter(os.Args[3])
		}
		for {
			time.Sleep(time.Hour)
		}
	case "serve":
		serveCommand(os.Args[2:])
	case "guard":
		guardCommand(os.Args[2:])
	case "local":
		localCommand(os.Args[2:])
	case "local-ns":
		localNamespaceCommand(os.Args[2:])
	case "install":
		if len(os.Args) < 3 {
			fail("install: no destination")
		}
		install(os.Args[2])
	case "supervise":
		argv := os.Args[2:]
		if len(argv) > 0 && argv[0] == "--" {
			argv = argv[1:]
		}
		if len(argv) == 0 {
			fail("supervise: no command")
		}
		supervise(argv)
	case "version":
		fmt.Println(protocolVersion)
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
