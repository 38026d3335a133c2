package testio

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProcess_LeftInGroup: a process that exits on its own has what it
// left in its group killed before it is reaped, while the group id is
// still its own; Stop then signals no group (the pid may be another
// process's by then). Before, the sleep below lived on until Stop sent
// SIGTERM to the group id, whoever had it by then.
func TestProcess_LeftInGroup(t *testing.T) {
	p := Start(t, "sh", nil, "/bin/sh", "-c", "sleep 300 & echo $!")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := p.exited(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sh did not exit within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	child, err := strconv.Atoi(strings.TrimSpace(p.Out.String()))
	if err != nil {
		t.Fatalf("the child's pid: %v (output %q)", err, p.Out.String())
	}
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("sleep (%d), left in the group of sh, still alive after sh was reaped", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Stop()
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
