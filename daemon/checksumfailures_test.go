package daemon

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/metrics"
	"github.com/hoardbackup/hoard/storage"
)

// TestSupervisor_NoteBackupsChecksumFailures: the newest backup's
// recorded data page checksum failures are in the metrics
// (hoard_last_basebackup_checksum_failures) and in the status's
// last_basebackup, so that an alert can fire on a cluster whose every
// backup copies damaged pages; a count that does not authenticate in a
// site with keys (altered by a writer of the bucket without the key) is
// not taken for fact: the gauge says 0, the status says it apart.
// Before, neither said anything of it.
func TestSupervisor_NoteBackupsChecksumFailures(t *testing.T) {
	keyed := &archive.Codec{}
	archivetest.AddKeys(t, keyed)
	for _, c := range []struct {
		name           string
		codec          *archive.Codec
		failures       string
		edit           func(storage.Metadata)
		want           float64
		wantUnverified int64
	}{
		{"Keyless", &archive.Codec{}, "3", nil, 3, 0},
		{"Signed", keyed, "3", nil, 3, 0},
		{"None", keyed, "0", nil, 0, 0},
		{"Altered", keyed, "0", func(md storage.Metadata) { md[archive.MetaChecksumFailures] = "7" }, 0, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := archivetest.New(t, storage.NewMem(), c.codec)
			key := archivetest.PutChecksumFailuresBackup(t, a, "2026-01-02_03-00_0", c.failures)
			if c.edit != nil {
				archivetest.PlantCopy(t, a.Store, key, key, c.edit)
			}
			bs, err := a.ScanBackups(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			reg := metrics.New(nil)
			s := &supervisor{m: newSiteMetrics(reg, "s"), codec: a.Codec}
			s.noteBackups(len(bs.Sound), bs.Sound)
			if got := s.m.checksumFailures.Value(); got != c.want {
				t.Errorf("%s = %v, want %v", MetricLastBackupChecksumFailures, got, c.want)
			}
			var prom strings.Builder
			if err := reg.WritePrometheus(&prom); err != nil {
				t.Fatal(err)
			}
			if want := MetricLastBackupChecksumFailures + `{site="s"} `; !strings.Contains(prom.String(), want) {
				t.Errorf("/metrics lacks %q:\n%s", want, prom.String())
			}
			st := s.st.LastBackup
			if st == nil {
				t.Fatal("no last backup in the status")
			}
			if got := st.ChecksumFailures; got != int64(c.want) {
				t.Errorf("status checksum_failures = %d, want %v", got, c.want)
			}
			if got := st.ChecksumFailuresUnverified; got != c.wantUnverified {
				t.Errorf("status checksum_failures_unverified = %d, want %d", got, c.wantUnverified)
			}
			js, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(js), `"checksum_failures":`) {
				t.Errorf("status JSON lacks checksum_failures: %s", js)
			}
		})
	}
}
