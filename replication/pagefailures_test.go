package replication

import (
	"fmt"
	"testing"
)

// TestPageFailures_Add: basebackup.c's checksum warnings, counted as the
// server counts them; other warnings (translated ones among them) are
// not, and a backup failed with XX001 counts at least one block.
func TestPageFailures_Add(t *testing.T) {
	tests := []struct {
		name       string
		warnings   []string
		files      int
		blocks     int64
		firstCount int64
	}{
		{"OK", []string{`checksum verification failed in file "./base/5/16384", block 3: calculated DD84 but expected 1C0B`}, 1, 1, 1},
		{"FileTotal", []string{
			`checksum verification failed in file "./base/5/1", block 1: calculated 1 but expected 2`,
			`checksum verification failed in file "./base/5/1", block 7: calculated 1 but expected 2`,
			`file "./base/5/1" has a total of 2 checksum verification failures`,
		}, 1, 2, 2},
		{"Translated", []string{`Prüfsummenüberprüfung fehlgeschlagen in Datei »./base/5/1«, Block 1: berechnet 1, aber erwartet 2`}, 0, 1, 0},
		{"Other", []string{`could not verify checksum in file "./base/5/1", block 1: read buffer size 10 and page size 8192 differ`}, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p pageFailures
			for _, w := range tt.warnings {
				p.add(w)
			}
			if got := len(p.files); got != tt.files {
				t.Fatalf("%d files, want %d: %+v", got, tt.files, p.files)
			}
			if got := p.blocks(); got != tt.blocks {
				t.Errorf("blocks() = %d, want %d", got, tt.blocks)
			}
			if tt.files > 0 && p.files[0].Count != tt.firstCount {
				t.Errorf("first file's count %d, want %d", p.files[0].Count, tt.firstCount)
			}
		})
	}
}

// TestPageFailures_ManyFiles: files past maxFailedFiles are left out of
// the list, and the server's total still counts their blocks.
func TestPageFailures_ManyFiles(t *testing.T) {
	var p pageFailures
	for i := range maxFailedFiles + 5 {
		p.add(fmt.Sprintf(`checksum verification failed in file "./base/5/%d", block 0: calculated 1 but expected 2`, i))
	}
	p.add(fmt.Sprintf("%d total checksum verification failures", maxFailedFiles+5))
	if got, want := len(p.files), maxFailedFiles; got != want {
		t.Errorf("%d files listed, want %d", got, want)
	}
	if got, want := p.blocks(), int64(maxFailedFiles+5); got != want {
		t.Errorf("blocks() = %d, want %d", got, want)
	}
}

// TestPageFailures_End: after the archives, the server's total of
// failing blocks (perform_base_backup) is read in any language, from
// PostgreSQL 15's translations; a warning there with no number, or
// more than one, changes nothing.
func TestPageFailures_End(t *testing.T) {
	tests := []struct {
		name, warning string
		blocks        int64
	}{
		{"English", "7 total checksum verification failures", 7},
		{"German", "7 Prüfsummenfehler insgesamt", 7},
		{"French", "7 erreurs de vérifications des sommes de contrôle au total", 7},
		{"Japanese", "合計12個のデータチェックサム検証エラー", 12},
		{"ErrNoNumber", "eine Warnung", 1},
		{"ErrTwoNumbers", "7 von 8", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p pageFailures
			p.add("Prüfsummenüberprüfung fehlgeschlagen in Datei »./base/5/1«, Block 1: berechnet 1, aber erwartet 2")
			p.end()
			p.add(tt.warning)
			if got := p.blocks(); got != tt.blocks {
				t.Errorf("blocks() = %d, want %d", got, tt.blocks)
			}
			if len(p.files) != 0 {
				t.Errorf("files %+v, want none", p.files)
			}
		})
	}
}
