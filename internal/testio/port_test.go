package testio

import (
	"net"
	"strconv"
	"testing"
)

// FreePort hands out ports outside the kernel's ephemeral range, where an
// outgoing connection could take them, never the same port twice, and
// each one free to bind.
func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		port := FreePort(t)
		if port < portLow || port >= portHigh {
			t.Fatalf("port %d outside %d-%d", port, portLow, portHigh-1)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d not free: %v", port, err)
		}
		l.Close()
	}
}

// A port something listens on is passed over.
func TestFreePort_SkipsTaken(t *testing.T) {
	next := nextPort.Load() + 1
	taken := portLow + int(next-portLow)%(portHigh-portLow)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(taken))
	if err != nil {
		t.Skipf("port %d already taken elsewhere: %v", taken, err)
	}
	defer l.Close()
	if port := FreePort(t); port == taken {
		t.Fatalf("FreePort returned %d, on which a listener is open", port)
	}
}
