package main

// The data lane: a second path for a stream's frames, faster than `kubectl exec`.
//
// A `kubectl exec` stream carries some 45-60 MB/s from the client to the pod, where
// `kubectl port-forward` carries 140-190 MB/s on the same cluster (measured). A bridge
// session moves its frames to a port-forwarded TCP connection: on 'X' the agent listens
// on 127.0.0.1 in the pod with a random port, answers with the port and a 32-byte random
// token, and takes the first connection that presents the token within 30 s; every
// frame in both directions then travels on it. Anything else in the pod's network (the
// app) may connect too, so the token is checked, in constant time, before anything is
// read as a frame. The exec stream stays open: its end still ends the session.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

const (
	laneTokenSize = 32
	laneHello     = 2 * time.Second // a connection that does not show the token goes
)

// laneWait bounds how long the request loop waits for the lane's connection (a var:
// the fuzz harness, which never connects, waits less).
var laneWait = 30 * time.Second

func (s *server) openLane(id uint32) (net.Conn, error) {
	listener, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer listener.Close()
	token := make([]byte, laneTokenSize)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	port := uint16(listener.Addr().(*net.TCPAddr).Port)
	s.out.send('X', id, binary.BigEndian.AppendUint16(nil, port), token)
	deadline := time.Now().Add(laneWait)
	listener.(*net.TCPListener).SetDeadline(deadline)
	for {
		conn, err := listener.Accept()
		if err != nil {
			return nil, fmt.Errorf("the data lane was not opened within %s: %v", laneWait, err)
		}
		if presentsToken(conn, token) {
			s.out.redirect(conn)
			return conn, nil
		}
		conn.Close()
		if time.Now().After(deadline) {
			return nil, errors.New("the data lane was not opened in time")
		}
	}
}

func presentsToken(conn net.Conn, token []byte) bool {
	conn.SetReadDeadline(time.Now().Add(laneHello))
	defer conn.SetReadDeadline(time.Time{})
	got := make([]byte, len(token))
	_, err := io.ReadFull(conn, got)
	return err == nil && subtle.ConstantTimeCompare(got, token) == 1
}
