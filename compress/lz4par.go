package compress

import (
	"sync"

	"github.com/pierrec/lz4/v4"
)

// lz4Par compresses an lz4Writer's blocks on several goroutines: the
// caller's Write copies the input into batches of lz4BatchSize bytes,
// workers compress each batch's 64 KiB blocks into the batch's own output
// buffer, and the caller writes the finished batches downstream (the
// envelope, the upload) in the order they were filled. The frame is the
// same, byte for byte, as the lz4Writer writes alone: the blocks are cut
// at the same offsets and each is compressed the same way.
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
	cur     *lz4Batch      // the batch being filled, or nil
	workers int
	started bool
	wg      sync.WaitGroup
}

// lz4BatchSize is the plaintext of one hand-over to a worker: 4 blocks,
// so that a hand-over costs little against compressing them.
const lz4BatchSize = 4 * lz4BlockMax

// lz4Batch is up to lz4BatchSize bytes of input and its stored blocks.
type lz4Batch struct {
	in   []byte
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
		for in := b.in; len(in) > 0; {
			n := min(len(in), lz4BlockMax)
			b.out = appendLZ4Block(&c, b.out, in[:n])
			in = in[n:]
		}
		b.done <- struct{}{}
	}
}

// write copies p into batches and hands each full one to the workers;
// emit writes a finished batch's blocks downstream, in order, and returns
// its error (after which write stops).
func (p *lz4Par) write(data []byte, emit func([]byte) error) error {
	for len(data) > 0 {
		if p.cur == nil {
			b, err := p.take(emit)
			if err != nil {
				return err
			}
			p.cur = b
		}
		c := min(len(data), cap(p.cur.in)-len(p.cur.in))
		p.cur.in = append(p.cur.in, data[:c]...)
		data = data[c:]
		if len(p.cur.in) == cap(p.cur.in) {
			p.submit()
		}
	}
	return nil
}

// submit hands the batch being filled to the workers.
func (p *lz4Par) submit() {
	if !p.started {
		p.started = true
		p.wg.Add(p.workers)
		for range p.workers {
			go p.run()
		}
	}
	p.pending = append(p.pending, p.cur)
	p.work <- p.cur // never blocks: there are no more batches than room
	p.cur = nil
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
	b.in = b.in[:0]
	return b, emit(b.out)
}

// close hands over what is buffered, emits every batch in order (none
// after emit fails) and ends the workers; it always ends them, so that an
// upload that failed leaves no goroutine behind.
func (p *lz4Par) close(emit func([]byte) error, failed bool) error {
	if p.cur != nil && len(p.cur.in) > 0 && !failed {
		p.submit()
	}
	var err error
	for _, b := range p.pending {
		<-b.done
		if err == nil && !failed {
			err = emit(b.out)
		}
	}
	p.pending = nil
	close(p.work)
	p.wg.Wait()
	return err
}
