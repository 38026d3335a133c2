package verify

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// segments decodes every stored segment on the chains, once each, and
// returns the damaged ones with the problem found.
func (c *checker) segments(ctx context.Context, idx *walIndex, chains []*Chain, parallel int) (map[string]string, error) {
	seen := map[string]bool{}
	var names []string
	for _, ch := range chains {
		if ch == nil {
			continue
		}
		for _, n := range ch.Segments {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	bad := map[string]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, name := range names {
		if gctx.Err() != nil {
			break
		}
		key := c.a.Layout.WALKey(name)
		g.Go(func() error {
			err := c.decodeWAL(gctx, key, name, true)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			if err != nil {
				c.log.Debug().Err(err).Str("segment", name).Msg("WAL segment damaged")
				mu.Lock()
				bad[name] = fmt.Sprintf("WAL segment %s: %v", key, err)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return bad, nil
}

// histories decodes every stored timeline history file and parses it.
func (c *checker) histories(ctx context.Context, idx *walIndex, rep *Report) error {
	for tli := range idx.histories {
		name := wal.HistoryFileName(tli)
		key := c.a.Layout.WALKey(name)
		rc, _, err := c.a.Codec.Open(ctx, c.a.Store, key)
		if err == nil {
			var data []byte
			data, err = io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
			if err == nil {
				_, err = wal.ParseHistory(tli, data)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("timeline history %s: %v", key, err))
		}
	}
	return nil
}

// decodeWAL decodes a stored WAL file to its end, compares its hash
// metadata with the decoded bytes and, for a segment, checks its page
// header against its name and size.
func (c *checker) decodeWAL(ctx context.Context, key, name string, segment bool) error {
	rc, md, err := c.a.Codec.Open(ctx, c.a.Store, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	var sum hash.Hash
	if md[archive.MetaHash] != "" {
		alg := md[archive.MetaHashAlgorithm]
		if alg == "" {
			alg = archive.DefaultHashAlgorithm
		}
		if sum, err = archive.NewHash(alg); err != nil {
			return err
		}
	}
	head := make([]byte, 0, wal.PageHeaderSize)
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := rc.Read(buf)
		if k > 0 {
			if len(head) < wal.PageHeaderSize {
				head = append(head, buf[:min(k, wal.PageHeaderSize-len(head))]...)
			}
			if sum != nil {
				sum.Write(buf[:k])
			}
			n += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if sum != nil {
		if got := hex.EncodeToString(sum.Sum(nil)); got != md[archive.MetaHash] {
			return fmt.Errorf("decoded bytes hash to %s, metadata says %s", got, md[archive.MetaHash])
		}
	}
	if segment {
		if _, err := wal.CheckSegment(name, head, n); err != nil {
			return err
		}
	}
	return nil
}
