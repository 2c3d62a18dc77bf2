package main

// The developer's side of `kubeloop bridge`: run a command in network and mount
// namespaces of its own, without root.
//
//	kubeloop-agent local --control-fd N --resolv FILE -- CMD ARGS...
//
// The command gets a user namespace in which it keeps the developer's own uid, a
// network namespace with only loopback, and a private mount namespace whose
// /etc/resolv.conf is FILE (the pod's search domains, kubeloop's resolver). In it, every
// TCP connection to a non-loopback address and every DNS query is redirected (nft.go)
// to listeners that kubeloop (over the control socket) carries to the pod. Nothing is
// added to the host's routes, DNS or /etc/hosts; no root, TUN device or VPN.
//
// Control socket messages (this side -> kubeloop): "L" with two descriptors, the TCP
// listener and the DNS socket. kubeloop -> this side: "S" asks for a new TCP socket in
// the namespace (answered "S" with its descriptor), which kubeloop connects to the
// command's port to deliver a bridged connection.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type localArgs struct {
	controlFD int
	resolv    string
	argv      []string
}

func parseLocal(args []string) localArgs {
	parsed := localArgs{controlFD: -1}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--control-fd":
			if i+1 < len(args) {
				fmt.Sscanf(args[i+1], "%d", &parsed.controlFD)
				i++
			}
		case "--resolv":
			if i+1 < len(args) {
				parsed.resolv = args[i+1]
				i++
			}
		case "--":
			parsed.argv = args[i+1:]
			return parsed
		}
	}
	return parsed
}

// localCommand starts the inner half in new namespaces and passes its exit code on.
func localCommand(args []string) {
	parsed := parseLocal(args)
	if parsed.controlFD < 0 || parsed.resolv == "" || len(parsed.argv) == 0 {
		fail("usage: local --control-fd N --resolv FILE -- CMD ARGS...")
	}
	self, err := os.Executable()
	if err != nil {
		fail("%v", err)
	}
	inner := []string{"local-ns", "--control-fd", "3", "--resolv", parsed.resolv, "--"}
	cmd := exec.Command(self, append(inner, parsed.argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(parsed.controlFD), "control")}
	uid, gid := os.Getuid(), os.Getgid()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		// The developer stays themselves inside: files they write are theirs.
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		GidMappingsEnableSetgroups: false,
		// A non-root process loses its capabilities at exec; the namespace set-up needs
		// these two (in its own namespaces only), and drops them before the command runs.
		AmbientCaps: []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		fail("cannot make a network namespace without root (%v); this system does not allow "+
			"unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone, or an "+
			"AppArmor restriction)", err)
	}
	forwardSignals(cmd.Process)
	os.Exit(exitCode(cmd.Wait()))
}

func forwardSignals(process *os.Process) {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for sig := range signals {
			process.Signal(sig)
		}
	}()
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if exit, ok := err.(*exec.ExitError); ok {
		if status, ok := exit.Sys().(syscall.WaitStatus); ok && status.Signaled() {
			return 128 + int(status.Signal())
		}
		return exit.ExitCode()
	}
	return 1
}

// localNamespaceCommand runs inside the new namespaces: network, redirects, resolver,
// then the developer's command, serving socket requests until it exits.
func localNamespaceCommand(args []string) {
	runtime.LockOSThread()
	parsed := parseLocal(args)
	control, err := net.FileConn(os.NewFile(uintptr(parsed.controlFD), "control"))
	if err != nil {
		fail("control socket: %v", err)
	}
	unixControl := control.(*net.UnixConn)
	if err := setUpNetwork(); err != nil {
		fail("setting up the command's network: %v", err)
	}
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail("%v", err)
	}
	dns, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		fail("%v", err)
	}
	tcpPort := uint16(tcp.Addr().(*net.TCPAddr).Port)
	dnsPort := uint16(dns.LocalAddr().(*net.UDPAddr).Port)
	if err := redirectOutbound(tcpPort, dnsPort); err != nil {
		fail("redirecting the command's connections (nftables): %v", err)
	}
	if err := useResolver(parsed.resolv); err != nil {
		fail("%v", err)
	}
	tcpFile, _ := tcp.(*net.TCPListener).File()
	dnsFile, _ := dns.(*net.UDPConn).File()
	if _, _, err := unixControl.WriteMsgUnix([]byte("L"), unix.UnixRights(int(tcpFile.Fd()), int(dnsFile.Fd())), nil); err != nil {
		fail("handing over the listeners: %v", err)
	}
	tcpFile.Close()
	dnsFile.Close()
	cmd := exec.Command(parsed.argv[0], parsed.argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The command runs with the developer's rights only: capabilities are per thread and
	// this goroutine's thread (locked in main) is the one that forks it.
	unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	if err := cmd.Start(); err != nil {
		fail("cannot start %s: %v", parsed.argv[0], err)
	}
	forwardSignals(cmd.Process)
	go serveSockets(unixControl)
	os.Exit(exitCode(cmd.Wait()))
}

func setUpNetwork() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	// Every destination "routes" to loopback: the redirect rules then take each
	// connection to kubeloop's listener (without a route, connect would fail first).
	// With 127.0.0.1 as the source: without one, connections would leave from 0.0.0.0
	// and never get their answers.
	_, everywhere, _ := net.ParseCIDR("0.0.0.0/0")
	return netlink.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: everywhere,
		Scope: netlink.SCOPE_LINK, Src: net.IPv4(127, 0, 0, 1)})
}

func useResolver(path string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("private mounts: %w", err)
	}
	if err := unix.Mount(path, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("using the pod's resolver settings: %w", err)
	}
	return nil
}

func serveSockets(control *net.UnixConn) {
	buf := make([]byte, 16)
	for {
		n, err := control.Read(buf)
		if err != nil || n == 0 {
			return
		}
		for i := 0; i < n; i++ {
			if buf[i] != 'S' {
				continue
			}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				control.Write([]byte("E"))
				continue
			}
			control.WriteMsgUnix([]byte("S"), unix.UnixRights(fd), nil)
			unix.Close(fd)
		}
	}
}
