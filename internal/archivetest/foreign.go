package archivetest

import (
	"bytes"
	"context"
	"maps"
	"testing"

	"github.com/hoardbackup/hoard/archive"
)

// ForeignSystem stores the control object of backup b of a again with
// the system identifier its manifest records replaced by id (as long as
// the one it had, so the tar's sizes hold) and sets the system
// identifier of its metadata to id: what a backup of another cluster with
// the same start, swapped in under b's name by someone who can write to
// the bucket, looks like to a reader. In a site that does not encrypt,
// where the test can re-encode the object.
func ForeignSystem(t testing.TB, a *archive.Archive, b *archive.BackupInfo, id string) {
	t.Helper()
	if len(id) != len(b.SystemID) {
		t.Fatalf("system identifier %q is not as long as %q", id, b.SystemID)
	}
	data, md := Decode(t, a.Codec, a.Store, b.Key)
	old := []byte(`"system_identifier":"` + b.SystemID + `"`)
	if bytes.Count(data, old) != 1 {
		t.Fatalf("control object %s: %s found %d times", b.Key, old, bytes.Count(data, old))
	}
	data = bytes.Replace(data, old, []byte(`"system_identifier":"`+id+`"`), 1)
	md = maps.Clone(md)
	md[archive.MetaSystemID] = id
	if _, err := a.Codec.Put(context.Background(), a.Store, b.Key, bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
}
