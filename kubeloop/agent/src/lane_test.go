package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// The data lane: only a connection that presents the token carries frames; the exec
// stream's end ends the session.
func TestLaneNeedsTheTokenAndCarriesTheFrames(t *testing.T) {
	pr, pw := io.Pipe()
	var replies bytes.Buffer
	out := newOutput(&lockedBuffer{b: &replies})
	s := newServer(-1, out, func(syscall.Signal) error { return nil }, "")
	done := make(chan struct{})
	go func() { s.run(pr); close(done) }()
	pw.Write((&request{}).frame('X', 7).b.Bytes())

	var reply []frame
	deadline := time.Now().Add(5 * time.Second)
	for len(reply) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		reply = parseReplies(t, []byte(readLocked(out, &replies)))
	}
	if len(reply) != 1 || reply[0].op != 'X' || len(reply[0].body) != 2+laneTokenSize {
		t.Fatalf("lane reply: %+v", reply)
	}
	address := fmt.Sprintf("127.0.0.1:%d", binary.BigEndian.Uint16(reply[0].body))
	token := reply[0].body[2:]

	// Someone else in the pod: a wrong token is dropped, nothing is served to it.
	intruder, err := net.Dial("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	intruder.Write(bytes.Repeat([]byte{'P'}, laneTokenSize))
	intruder.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, _ := intruder.Read(make([]byte, 16)); n != 0 {
		t.Fatal("an intruder got an answer")
	}

	lane, err := net.Dial("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	lane.Write(token)
	lane.Write((&request{}).frame('P', 9, []byte("hi")).b.Bytes())
	lane.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := readFrame(bufio.NewReader(lane), make([]byte, maxFrame))
	if err != nil || got.op != 'P' || got.id != 9 || string(got.body) != "hi" {
		t.Fatalf("ping over the lane: %+v %v", got, err)
	}
	pw.Close() // the exec stream ends: so does the session
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the session outlived its exec stream")
	}
}
