package command

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestManyFiles builds, when HOARD_MANY_FILES names a directory, a
// PostgreSQL 15 cluster of very many small relation files there, for
// measuring hoard's commands on the data directories of schema-per-tenant
// databases (docs/benchmarks.md, Many files): HOARD_MANY_FILES_TABLES
// tables (default 25 000), each with a primary key, a text column (so a
// TOAST table and its index) and one row, so four files a table. It
// leaves in the directory the stopped cluster's data directory (data/,
// listening on HOARD_MANY_FILES_PORT, default 25433, on 127.0.0.1 with
// its socket in the directory, started by the postgres user when this
// runs as root), and two configurations of a site "s" in local storage
// (store/, encrypted with a new key pair): hoard.json backs up over
// BASE_BACKUP, hoard-localtar.json reads data/ in local-tar mode.
// Without the variable it does nothing: it is a tool, not a test.
func TestManyFiles(t *testing.T) {
	dir := os.Getenv("HOARD_MANY_FILES")
	if dir == "" {
		t.Skip("HOARD_MANY_FILES is not set")
	}
	count := func(env string, def int) int {
		n, err := strconv.Atoi(cmp.Or(os.Getenv(env), strconv.Itoa(def)))
		if err != nil || n < 1 {
			t.Fatalf("%s: want a positive number", env)
		}
		return n
	}
	nTables, port := count("HOARD_MANY_FILES_TABLES", 25000), count("HOARD_MANY_FILES_PORT", 25433)
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(data); err == nil {
		t.Fatalf("%s exists: remove it first", data)
	}
	// Each CREATE TABLE holds four locks (table, index, TOAST table and
	// its index) until its DO block commits.
	const batch = 500
	c := pgtest.Start(t, pgtest.Options{Debian: true, DataChecksums: true,
		Conf: map[string]string{"max_locks_per_transaction": "1024", "shared_buffers": "128MB"}})
	for from := 1; from <= nTables; from += batch {
		to := min(from+batch-1, nTables)
		c.Exec(t, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP
			EXECUTE format('CREATE TABLE t%%s (id int PRIMARY KEY, v text)', i);
			EXECUTE format('INSERT INTO t%%s VALUES (1, %%L)', i, 'tenant ' || i);
			END LOOP; END $$`, from, to))
	}
	c.Exec(t, "CHECKPOINT")
	var files int
	c.Scan(t, "SELECT count(*) FROM pg_class WHERE relkind IN ('r','i','t') AND relfilenode <> 0", &files)
	t.Logf("%d tables, %d relations with a file of their own", nTables, files)
	c.Stop(t)
	// The harness's data directory goes with the test: copy it, owner
	// and modes kept.
	if out, err := exec.Command("cp", "-a", c.DataDir, data).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	pgtest.Chown(t, dir)
	pgtest.AppendConf(t, data, map[string]string{"port": strconv.Itoa(port), "listen_addresses": "127.0.0.1",
		"unix_socket_directories": dir, "max_locks_per_transaction": "1024"})

	key, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := crypto.EncodePrivateKeyPEM(key)
	pub, _ := crypto.EncodePublicKeyPEM(&key.PublicKey)
	for file, mode := range map[string]string{"hoard.json": `"basebackup_mode": "basic", `,
		"hoard-localtar.json": fmt.Sprintf(`"basebackup_mode": "local-tar", "pg_data_directory": %q, `, data)} {
		cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s", %s`+
			`"encryption_key_id": "k1", "encryption_keys": {"k1": {"public": %s, "private": %s}}, `+
			`"nodes": [{"host": "127.0.0.1", "port": %d, "user": "postgres"}], `+
			`"object_storage": {"storage_type": "local", "directory": %q}}}}`,
			filepath.Join(dir, "state"), mode, jsonString(t, pub), jsonString(t, priv), port, filepath.Join(dir, "store"))
		if err := os.WriteFile(filepath.Join(dir, file), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
