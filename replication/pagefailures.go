package replication

import (
	"regexp"
	"strconv"
)

// PageFailures is one file whose data pages failed their checksum, as the
// server's WARNINGs during a BASE_BACKUP name it.
type PageFailures struct {
	// File is the file as the server names it: "./base/5/16384" in the
	// data directory, "<tablespace location>/PG_<version>_<catalog
	// version>/5/16390" in a tablespace (sendDir and sendTablespace in
	// basebackup.c).
	File string
	// Count is the number of failing blocks in the file: the server's
	// total for the file, or the blocks it named.
	Count int64
	// Blocks are the block numbers the server named, in order: the first
	// five (it names no more of a file).
	Blocks []uint32
}

// maxFailedFiles caps ChecksumError.Files. The blocks of the files left
// out still count in ChecksumError.Blocks: with more than one failure the
// server sends its total.
const maxFailedFiles = 100

// The WARNINGs basebackup.c sends about checksums (sendFile and
// perform_base_backup, PostgreSQL 13 to 18), in English; a server with
// another lc_messages sends them translated, and those are not parsed
// (ConnectEnglish asks for English), but for the total (end).
var (
	failedBlockRE = regexp.MustCompile(`^checksum verification failed in file "(.*)", block ([0-9]+): calculated [0-9A-F]+ but expected [0-9A-F]+$`)
	fileTotalRE   = regexp.MustCompile(`^file "(.*)" has a total of ([0-9]+) checksum verification failures?$`)
	totalRE       = regexp.MustCompile(`^([0-9]+) total checksum verification failures?$`)
)

// pageFailures gathers the checksum failures of a BASE_BACKUP from the
// server's warnings.
type pageFailures struct {
	files  []PageFailures
	byFile map[string]int // index in files
	total  int64          // the server's total; 0 when it sent none
	// ended is set once the archives have ended (end).
	ended bool
}

// end notes that the backup's archives, the manifest included, have
// ended. The one warning perform_base_backup sends after them is its
// total of failing blocks, when more than one failed, just before the
// ERROR; the other warnings of a BASE_BACKUP (the files' and
// do_pg_backup_stop's) come before. Read as the only number in it, the
// total needs no English: in German "2 Prüfsummenfehler insgesamt", in
// Japanese "合計2個のデータチェックサム検証エラー" (the server prints
// %lld without grouping).
func (p *pageFailures) end() { p.ended = true }

// add takes one WARNING's message; others than basebackup.c's checksum
// warnings are ignored.
func (p *pageFailures) add(msg string) {
	if p.ended {
		if n, ok := soleNumber(msg); ok {
			p.total = n
		}
		return
	}
	if m := totalRE.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.ParseInt(m[1], 10, 64); err == nil {
			p.total = n
		}
		return
	}
	var file string
	var block uint64
	var count int64
	if m := failedBlockRE.FindStringSubmatch(msg); m != nil {
		b, err := strconv.ParseUint(m[2], 10, 32)
		if err != nil {
			return
		}
		file, block = m[1], b
	} else if m := fileTotalRE.FindStringSubmatch(msg); m != nil {
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			return
		}
		file, count = m[1], n
	} else {
		return
	}
	i, ok := p.byFile[file]
	if !ok {
		if len(p.files) == maxFailedFiles {
			return
		}
		if p.byFile == nil {
			p.byFile = map[string]int{}
		}
		i = len(p.files)
		p.byFile[file] = i
		p.files = append(p.files, PageFailures{File: file})
	}
	f := &p.files[i]
	if count > 0 {
		// After the blocks it named, the file's total (sent when more
		// than one failed).
		f.Count = count
		return
	}
	f.Count++
	f.Blocks = append(f.Blocks, uint32(block))
}

// blocks returns the number of failing blocks: the server's total (sent
// when more than one failed), else the files' counts, and at least 1,
// since the server ends a backup with XX001 only when a page failed.
// After end, in any language, that is the server's count: its total, or
// 1 when it sent none.
func (p *pageFailures) blocks() int64 {
	if p.total > 0 {
		return p.total
	}
	var n int64
	for _, f := range p.files {
		n += f.Count
	}
	return max(n, 1)
}

// soleNumber returns the one run of ASCII digits in msg, if it holds
// exactly one.
func soleNumber(msg string) (int64, bool) {
	start, runs := -1, 0
	var digits string
	for i := 0; i <= len(msg); i++ {
		digit := i < len(msg) && msg[i] >= '0' && msg[i] <= '9'
		switch {
		case digit && start < 0:
			start = i
		case !digit && start >= 0:
			digits, runs, start = msg[start:i], runs+1, -1
		}
	}
	if runs != 1 {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil && n > 0
}
