package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// States of a basebackup request (RequestStatus.State), as GET
// /<site>/basebackup/<id> answers them.
const (
	// RequestQueued: the backup loop has not taken the request yet (a
	// backup it runs, or maintenance mode, holds it back).
	RequestQueued = "queued"
	// RequestRunning: the backup taken for the request runs.
	RequestRunning = "running"
	// RequestStored: the backup taken for the request is stored
	// (RequestStatus.Backup names it).
	RequestStored = "stored"
	// RequestFailed: the backup taken for the request failed
	// (RequestStatus.Error). The daemon keeps the request and retries it
	// with backoff; a retry turns the state back to running.
	RequestFailed = "failed"
	// RequestDropped: the site stopped (shutdown, or a reload restarting
	// it) before a backup for the request was stored: nothing takes it.
	RequestDropped = "dropped"
)

// maxRequests is how many requests the daemon remembers: the oldest is
// forgotten when more are made. A waiting client polls every second or
// two, so only a request hundreds of requests old goes unanswered.
const maxRequests = 256

// RequestStatus is the outcome, so far, of one basebackup request.
type RequestStatus struct {
	ID     string `json:"id"`
	Site   string `json:"site"`
	State  string `json:"state"`
	Backup string `json:"backup,omitempty"` // the stored backup's name
	Error  string `json:"error,omitempty"`  // why the backup failed, or the request was dropped
}

// Done reports whether the state is final for someone waiting on it:
// stored, failed or dropped.
func (r RequestStatus) Done() bool {
	return r.State == RequestStored || r.State == RequestFailed || r.State == RequestDropped
}

// requestLog keeps the recent basebackup requests of all sites in memory,
// so that a client learns what became of its own request, not merely that
// some backup appeared. It outlives a reload's supervisors; a restarted
// daemon knows none (its ids are random, so none is taken for another's).
// The zero value is ready to use.
type requestLog struct {
	mu    sync.Mutex
	byID  map[string]*RequestStatus
	order []string // ids, oldest first
}

// add records a new queued request of site and returns its id.
func (l *requestLog) add(site string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	id := hex.EncodeToString(b[:])
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byID == nil {
		l.byID = map[string]*RequestStatus{}
	}
	if len(l.order) >= maxRequests {
		delete(l.byID, l.order[0])
		l.order = l.order[1:]
	}
	l.byID[id] = &RequestStatus{ID: id, Site: site, State: RequestQueued}
	l.order = append(l.order, id)
	return id
}

// forget removes request id: it was refused after all.
func (l *requestLog) forget(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byID, id)
	for i, o := range l.order {
		if o == id {
			l.order = append(l.order[:i], l.order[i+1:]...)
			break
		}
	}
}

// set gives the requests ids state, backup and error (forgotten ones are
// skipped).
func (l *requestLog) set(ids []string, state, backup, errText string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if r := l.byID[id]; r != nil {
			r.State, r.Backup, r.Error = state, backup, errText
		}
	}
}

// get returns request id of site; ok is false for an id it does not know
// (never made, forgotten, or made to another site or daemon run).
func (l *requestLog) get(site, id string) (RequestStatus, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.byID[id]
	if r == nil || r.Site != site {
		return RequestStatus{}, false
	}
	return *r, true
}
