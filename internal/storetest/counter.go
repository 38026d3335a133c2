package storetest

import (
	"context"
	"maps"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// Counter is a Store that counts the requests made through it that cost
// most in a large bucket: listings, by prefix, and Stats (a HEAD on S3),
// by the folder of the key. A test bounds how many a step makes. It also
// records when each Delete started and returned (Deletes), so a test
// sees how many were in flight at once and which came before which.
type Counter struct {
	storage.Store
	// DeleteHold, when set, is how long each Delete waits before it is
	// made (a storage's round trip), so that deletes made at once
	// overlap.
	DeleteHold time.Duration

	mu      sync.Mutex
	lists   map[string]int
	stats   map[string]int
	seq     int
	deletes []DeleteSpan
}

// DeleteSpan is one Delete made through a Counter: its key, and when it
// started and returned, as steps of one sequence that every Delete's
// start and return advance.
type DeleteSpan struct {
	Key        string
	Start, End int
	Err        error
}

func (c *Counter) count(m *map[string]int, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[key]++
}

func (c *Counter) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	c.count(&c.lists, prefix)
	return c.Store.List(ctx, prefix, fn)
}

func (c *Counter) Stat(ctx context.Context, key string) (storage.Object, error) {
	c.count(&c.stats, path.Dir(key))
	return c.Store.Stat(ctx, key)
}

func (c *Counter) Delete(ctx context.Context, key string) error {
	c.mu.Lock()
	c.seq++
	i := len(c.deletes)
	c.deletes = append(c.deletes, DeleteSpan{Key: key, Start: c.seq})
	c.mu.Unlock()
	if c.DeleteHold > 0 {
		time.Sleep(c.DeleteHold)
	}
	err := c.Store.Delete(ctx, key)
	c.mu.Lock()
	c.seq++
	c.deletes[i].End, c.deletes[i].Err = c.seq, err
	c.mu.Unlock()
	return err
}

// Deletes returns the Deletes made since the last Reset, in the order
// they started.
func (c *Counter) Deletes() []DeleteSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.deletes)
}

// MaxDeletesInFlight returns how many Deletes, at most, were in flight
// at once since the last Reset.
func (c *Counter) MaxDeletesInFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := map[int]int{} // +1 at a start, -1 at a return
	for _, d := range c.deletes {
		at[d.Start]++
		if d.End > 0 {
			at[d.End]--
		}
	}
	n, most := 0, 0
	for i := 1; i <= c.seq; i++ {
		n += at[i]
		most = max(most, n)
	}
	return most
}

// Lists returns how many times prefix was listed since the last Reset.
func (c *Counter) Lists(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lists[prefix]
}

// Counts returns, since the last Reset, the listings made by prefix and
// the Stats made by the folder of their key.
func (c *Counter) Counts() (lists, stats map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.lists), maps.Clone(c.stats)
}

// Reset forgets the requests counted so far.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lists, c.stats, c.deletes = nil, nil, nil
}
