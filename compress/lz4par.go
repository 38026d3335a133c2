package compress

import (
	"sync"

	"github.com/pierrec/lz4/v4"
)

// lz4Par compresses an lz4Writer's blocks on several goroutines. A write
// hands the workers batches of up to 4 whole blocks straight from the
// caller's bytes, and copies only what does not fill a block into a
// batch of its own; workers compress each batch's 64 KiB blocks into the
// batch's output buffer, and the caller writes the finished batches
// downstream (the envelope, the upload) in the order they were cut. A
// write returns once every batch that points into its bytes is written, so
// the caller may reuse them. The frame is the same, byte for byte, as the
// lz4Writer writes alone: blocks are cut at the same offsets of the stream
// and each is compressed the same way.
//
// A BASE_BACKUP chunk is one stream: in one goroutine its tar parsing, lz4
// and encryption ran one after the other, and that goroutine bounded the
// backup while the second core idled (docs/benchmarks.md). The batches
// (2 per worker) are allocated once and reused, so memory stays bounded:
// see WriterMemory.
type lz4Par struct {
	work    chan *lz4Batch // batches for the workers, in order
	pending []*lz4Batch    // batches handed to the workers, oldest first
	free    []*lz4Batch    // batches to fill
	cur     *lz4Batch      // the batch holding a partial block, or nil
	workers int
	started bool
	wg      sync.WaitGroup
}

// lz4BatchSize is the plaintext of one hand-over to a worker: 4 blocks,
// so that a hand-over costs little against compressing them.
const lz4BatchSize = 4 * lz4BlockMax

// lz4Batch is up to lz4BatchSize bytes of input and its stored blocks.
type lz4Batch struct {
	in   []byte        // the batch's own buffer for copied bytes
	src  []byte        // what is compressed: in, or part of a write's bytes
	out  []byte        // the stored blocks: size words and data
	done chan struct{} // receives once the worker has filled out
}

// lz4MaxWorkers bounds an lz4Par's workers: one core compresses lz4 at
// about a GB/s, faster than one BASE_BACKUP stream arrives, so more would
// only hold more batches.
const lz4MaxWorkers = 4

func newLZ4Par(workers int) *lz4Par {
	workers = min(workers, lz4MaxWorkers)
	p := &lz4Par{workers: workers, work: make(chan *lz4Batch, 2*workers)}
	for range 2 * workers {
		p.free = append(p.free, &lz4Batch{
			in:   make([]byte, 0, lz4BatchSize),
			out:  make([]byte, 0, lz4BatchSize+4*(lz4BatchSize/lz4BlockMax)),
			done: make(chan struct{}, 1),
		})
	}
	return p
}

// lz4ParMemory is what an lz4Par of workers goroutines holds: its batches'
// input and output buffers and each worker's compressor tables.
func lz4ParMemory(workers int) int64 {
	workers = min(workers, lz4MaxWorkers)
	return int64(workers) * (2*(2*lz4BatchSize+64) + 64<<10)
}

// run compresses batches until the channel is closed.
func (p *lz4Par) run() {
	defer p.wg.Done()
	var c lz4.CompressorCCompat
	for b := range p.work {
		b.out = b.out[:0]
		for in := b.src; len(in) > 0; {
			n := min(len(in), lz4BlockMax)
			b.out = appendLZ4Block(&c, b.out, in[:n])
			in = in[n:]
		}
		b.done <- struct{}{}
	}
}

// write cuts data into batches and hands them to the workers; emit writes
// a finished batch's blocks downstream, in order, and returns its error
// (after which write stops). Whole blocks are compressed from data itself,
// so write returns only once those batches are done.
func (p *lz4Par) write(data []byte, emit func([]byte) error) error {
	borrowed := false
	for len(data) > 0 {
		if p.cur == nil && len(data) >= lz4BlockMax {
			b, err := p.take(emit)
			if err != nil {
				p.wait()
				return err
			}
			b.src = data[:min(len(data), lz4BatchSize)&^(lz4BlockMax-1)]
			data = data[len(b.src):]
			p.submit(b)
			borrowed = true
			continue
		}
		if p.cur == nil {
			b, err := p.take(emit)
			if err != nil {
				p.wait()
				return err
			}
			p.cur = b
		}
		// Copy up to the end of the block being filled.
		c := min(len(data), lz4BlockMax-len(p.cur.in)%lz4BlockMax)
		p.cur.in = append(p.cur.in, data[:c]...)
		data = data[c:]
		if len(p.cur.in) == cap(p.cur.in) || (len(p.cur.in)%lz4BlockMax == 0 && len(data) >= lz4BlockMax) {
			p.cur.src = p.cur.in
			p.submit(p.cur)
			p.cur = nil
		}
	}
	if borrowed {
		return p.flush(emit)
	}
	return nil
}

// submit hands b to the workers.
func (p *lz4Par) submit(b *lz4Batch) {
	if !p.started {
		p.started = true
		p.wg.Add(p.workers)
		for range p.workers {
			go p.run()
		}
	}
	p.pending = append(p.pending, b)
	p.work <- b // never blocks: there are no more batches than room
}

// take returns a batch to fill: a free one, or the oldest handed over once
// it is compressed and emitted.
func (p *lz4Par) take(emit func([]byte) error) (*lz4Batch, error) {
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b, nil
	}
	b := p.pending[0]
	p.pending = p.pending[1:]
	<-b.done
	b.in, b.src = b.in[:0], nil
	return b, emit(b.out)
}

// flush emits every batch handed over, in order, and frees them; after an
// error it emits nothing more but still waits for every batch.
func (p *lz4Par) flush(emit func([]byte) error) error {
	var err error
	for _, b := range p.pending {
		<-b.done
		if err == nil {
			err = emit(b.out)
		}
		b.in, b.src = b.in[:0], nil
		p.free = append(p.free, b)
	}
	p.pending = p.pending[:0]
	return err
}

// wait waits until the workers are done with every batch handed over
// (none of them points into a caller's bytes any more), emitting nothing.
func (p *lz4Par) wait() {
	_ = p.flush(func([]byte) error { return errLZ4Closed })
}

// close hands over what is buffered, emits every batch in order (none
// after emit fails, none at all when failed) and ends the workers; it
// always ends them, so that an upload that failed leaves no goroutine
// behind.
func (p *lz4Par) close(emit func([]byte) error, failed bool) error {
	if p.cur != nil && len(p.cur.in) > 0 && !failed {
		p.cur.src = p.cur.in
		p.submit(p.cur)
		p.cur = nil
	}
	var err error
	if failed {
		p.wait()
	} else {
		err = p.flush(emit)
	}
	close(p.work)
	p.wg.Wait()
	return err
}
