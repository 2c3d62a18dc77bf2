// The supervisor's part in `kubeloop debug`: kubeloop writes a debugger for the app into
// debugRoot, one folder per language, and sends SIGHUP; while a folder exists, every start
// of the app (a sync's restart too) starts it under that debugger, listening on the pod's
// loopback only (a debugger runs any code it is asked to). kubeloop removes the folder to
// end the session, and the next start is a plain one again.
package main

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

const (
	debugRoot = "/tmp/kubeloop-debug"
	// Python: debugpy and a sitecustomize that starts it. The app gets the folder on
	// PYTHONPATH and KUBELOOP_DEBUG=1, which the sitecustomize takes out of the
	// environment as it starts the debugger: the app's own children (the debugger's
	// adapter is one) must not start another.
	pythonDebugDir = debugRoot + "/python"
	// Node: the folder only; the inspector is built in.
	nodeDebugDir = debugRoot + "/node"
	nodeInspect  = "--inspect=127.0.0.1:9229"
	// JVM: the folder only; the JDWP agent is built in.
	jvmDebugDir = debugRoot + "/jvm"
	jdwpAgent   = "-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:5005"
	// Go: a static Delve, which starts the program and serves DAP and its JSON-RPC API.
	delve       = debugRoot + "/go/dlv"
	delveListen = "--listen=127.0.0.1:2345"
)

// withDebugger returns the command and environment of the app's next start.
func withDebugger(argv, env []string) ([]string, []string) {
	if isDir(pythonDebugDir) {
		env = append(prepend(env, "PYTHONPATH", pythonDebugDir, ":"), "KUBELOOP_DEBUG=1")
	}
	if isDir(nodeDebugDir) {
		env = prepend(env, "NODE_OPTIONS", nodeInspect, " ")
	}
	if isDir(jvmDebugDir) {
		env = prepend(env, "JAVA_TOOL_OPTIONS", jdwpAgent, " ")
	}
	if info, err := os.Stat(delve); err == nil && info.Mode().IsRegular() {
		if err := goProgram(argv[0], env); err != nil {
			// The line kubeloop waits for: the session fails with it instead of timing out.
			fmt.Fprintf(os.Stderr, "kubeloop debug: delve not started: %v\n", err)
		} else {
			argv = append([]string{delve, "exec", "--headless", delveListen, "--api-version=2",
				"--accept-multiclient", "--continue", argv[0], "--"}, argv[1:]...)
		}
	}
	return argv, env
}

// goProgram tells whether the app's executable is a Go program Delve can start.
func goProgram(name string, env []string) error {
	path := name
	if !strings.Contains(name, "/") {
		found, err := lookPath(name, env)
		if err != nil {
			return err
		}
		path = found
	}
	if _, err := buildinfo.ReadFile(path); err != nil {
		return fmt.Errorf("%s is not a Go program (%v)", path, err)
	}
	return nil
}

// lookPath finds name on the app's PATH (which may differ from the supervisor's).
func lookPath(name string, env []string) (string, error) {
	for _, kv := range env {
		if path, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, dir := range strings.Split(path, ":") {
				candidate := dir + "/" + name
				if info, err := os.Stat(candidate); err == nil && info.Mode().IsRegular() {
					return candidate, nil
				}
			}
		}
	}
	return exec.LookPath(name)
}

// prepend puts value first in the variable key (joined by sep), or sets it.
func prepend(env []string, key, value, sep string) []string {
	for i, kv := range env {
		if old, ok := strings.CutPrefix(kv, key+"="); ok {
			env[i] = key + "=" + value + sep + old
			return env
		}
	}
	return append(env, key+"="+value)
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}
