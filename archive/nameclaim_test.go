package archive

import (
	"context"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_ClaimName: of two claims of one name the first wins, and a
// claim in a backup's chunk folder is not counted as one of its chunks
// (CheckBackupSealed): a folder holding only the claim, that of a
// backup killed before its first chunk, holds no chunk.
func TestArchive_ClaimName(t *testing.T) {
	ctx := context.Background()
	a := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "s"}, Site: "s"}
	const name = "2026-03-04_05-06_7250"
	for i, want := range []bool{true, false} {
		got, err := a.ClaimName(ctx, name)
		if err != nil || got != want {
			t.Fatalf("claim %d: ClaimName = %v, %v, want %v", i+1, got, err, want)
		}
	}
	b := &BackupInfo{Name: name, Format: FormatBBv2, ChunkCount: 1}
	if err := a.CheckBackupSealed(ctx, b); err == nil || !strings.Contains(err.Error(), "0 chunks stored") {
		t.Errorf("CheckBackupSealed with the claim alone = %v, want 0 chunks stored", err)
	}
	if err := a.Store.Put(ctx, a.Layout.ChunkKey(ChunkFilename(name, 1)), strings.NewReader("chunk"), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckBackupSealed(ctx, b); err != nil {
		t.Errorf("CheckBackupSealed with its chunk and the claim = %v", err)
	}
}
