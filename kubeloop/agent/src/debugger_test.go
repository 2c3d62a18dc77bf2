package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrependKeepsTheAppsValue(t *testing.T) {
	env := prepend([]string{"A=1", "NODE_OPTIONS=--max-old-space-size=512"}, "NODE_OPTIONS", nodeInspect, " ")
	if env[1] != "NODE_OPTIONS="+nodeInspect+" --max-old-space-size=512" {
		t.Fatalf("got %q", env[1])
	}
	env = prepend([]string{"A=1"}, "PYTHONPATH", pythonDebugDir, ":")
	if env[1] != "PYTHONPATH="+pythonDebugDir {
		t.Fatalf("got %q", env)
	}
}

func TestGoProgramTellsGoFromOtherExecutables(t *testing.T) {
	self, err := os.Executable() // a test binary is a Go program
	if err != nil {
		t.Fatal(err)
	}
	if err := goProgram(self, nil); err != nil {
		t.Fatalf("the test binary is Go: %v", err)
	}
	script := filepath.Join(t.TempDir(), "run")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755)
	if err := goProgram(script, nil); err == nil || !strings.Contains(err.Error(), "not a Go program") {
		t.Fatalf("a script is not Go: %v", err)
	}
	dir := filepath.Dir(self)
	if err := goProgram(filepath.Base(self), []string{"PATH=/nowhere:" + dir}); err != nil {
		t.Fatalf("found on the app's PATH: %v", err)
	}
	if err := goProgram("no-such-program-here", []string{"PATH=/nowhere"}); err == nil {
		t.Fatal("a missing program is an error")
	}
}
