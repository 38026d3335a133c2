package storetest

import (
	"context"
	"maps"
	"path"
	"sync"

	"github.com/hoardbackup/hoard/storage"
)

// Counter is a Store that counts the requests made through it that cost
// most in a large bucket: listings, by prefix, and Stats (a HEAD on S3),
// by the folder of the key. A test bounds how many a step makes.
type Counter struct {
	storage.Store

	mu    sync.Mutex
	lists map[string]int
	stats map[string]int
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
	c.lists, c.stats = nil, nil
}
