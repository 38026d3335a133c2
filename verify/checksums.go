package verify

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hoardbackup/hoard/archive"
)

// How much of a backup's checksum failure record a problem names: the
// record keeps up to 100 files, each with its first blocks, and a report
// line should stay readable.
const (
	failedFilesNamed  = 5
	failedBlocksNamed = 5
)

// checksumFailures reports the data page checksum failures the control
// object of b records (m.Hoard.ChecksumFailures: pages damaged in the
// cluster, which local-tar and delta mode found reading them, or the
// server named in a BASE_BACKUP it ended with XX001 after sending all of
// it); verify's control and deltaControl call it. Such a backup
// restores, but gives the cluster back with the same damaged pages: a
// problem of the limited kind, so that an operator who missed the
// backup's warning learns it here. The record is read from the control
// object, which the pghoa1 HMAC authenticates in a site with keys, not
// from the metadata count, which backups stored before its own HMAC
// (archive.MetaChecksumFailuresMAC) carry unsigned.
func (c *checker) checksumFailures(b *archive.BackupInfo, r *BackupReport, m *archive.Manifest) {
	if m.Hoard == nil || m.Hoard.ChecksumFailures == nil || m.Hoard.ChecksumFailures.Blocks <= 0 {
		return
	}
	c.problem(r, false, "%s", checksumProblem(b.Key, m.Hoard.ChecksumFailures))
}

// checksumProblem says what f records and what to do about it.
func checksumProblem(key string, f *archive.ChecksumFailures) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "control object %s: %d data pages failed their checksums when the backup was taken", key, f.Blocks)
	if n := len(f.Files); n > 0 {
		fmt.Fprintf(&sb, ", in %d files", n)
		var named []string
		for _, ff := range f.Files[:min(n, failedFilesNamed)] {
			named = append(named, fmt.Sprintf("%s (%s)", ff.File, blocksText(ff)))
		}
		sb.WriteString(": " + strings.Join(named, ", "))
		if n > failedFilesNamed {
			fmt.Fprintf(&sb, " and %d more files", n-failedFilesNamed)
		}
	} else if f.FilesUnknown {
		sb.WriteString(", in files the server named in another language than English, so the backup could not record them " +
			"(the server's log of the backup's time names them)")
	}
	sb.WriteString(": the pages are damaged in the cluster and the backup holds them as they were read, " +
		"so a restore gives them back damaged; check the cluster (pg_amcheck, pg_checksums --check on a stopped copy) " +
		"and repair the tables or restore them from a backup taken before the damage " +
		"(docs/backup-restore.md, Damaged data pages)")
	return sb.String()
}

// blocksText names the first blocks of ff: "block 3", "6 blocks: 3, 4, ...".
func blocksText(ff archive.ChecksumFailure) string {
	if ff.Count == 1 && len(ff.Blocks) == 1 {
		return "block " + strconv.FormatUint(uint64(ff.Blocks[0]), 10)
	}
	nums := make([]string, 0, failedBlocksNamed+1)
	for _, b := range ff.Blocks[:min(len(ff.Blocks), failedBlocksNamed)] {
		nums = append(nums, strconv.FormatUint(uint64(b), 10))
	}
	if int64(len(nums)) < ff.Count {
		nums = append(nums, "...")
	}
	if len(nums) == 0 {
		return fmt.Sprintf("%d blocks", ff.Count)
	}
	return fmt.Sprintf("%d blocks: %s", ff.Count, strings.Join(nums, ", "))
}
