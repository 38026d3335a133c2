package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// connectFake connects to a fake server of version answering with script,
// closed when the test ends.
func connectFake(t *testing.T, version string, script []pgproto3.BackendMessage) *Conn {
	t.Helper()
	conn, err := Connect(context.Background(), fakeServer(t, version, script))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// fakeServer is a scripted peer, for the protocol failures a real server
// does not produce on demand: it accepts one connection, answers the
// startup as the given server version, reads one query and sends script.
// It returns the connection string.
func fakeServer(t *testing.T, version string, script []pgproto3.BackendMessage) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- serveScript(l, version, script)
	}()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil {
			t.Errorf("fake server: %v", err)
		}
	})
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres sslmode=disable", l.Addr().(*net.TCPAddr).Port)
}

func serveScript(l net.Listener, version string, script []pgproto3.BackendMessage) error {
	nc, err := l.Accept()
	if err != nil {
		return err
	}
	defer nc.Close()
	be := pgproto3.NewBackend(nc, nc)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return err
	}
	for _, m := range []pgproto3.BackendMessage{
		&pgproto3.AuthenticationOk{},
		&pgproto3.ParameterStatus{Name: "server_version", Value: version},
		&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	} {
		be.Send(m)
	}
	if err := be.Flush(); err != nil {
		return err
	}
	if _, err := be.Receive(); err != nil {
		return err
	}
	for _, m := range script {
		be.Send(m)
	}
	if err := be.Flush(); err != nil {
		return err
	}
	// Wait for the client to hang up (Terminate or close).
	for {
		msg, err := be.Receive()
		if err != nil {
			return nil
		}
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return nil
		}
	}
}

// backupStart is the start of a PostgreSQL 15+ BASE_BACKUP response with
// one tablespace, up to the first archive's 'n' message.
func backupStart() []pgproto3.BackendMessage {
	return []pgproto3.BackendMessage{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("recptr")}, {Name: []byte("tli")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("0/2000028"), []byte("1")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("spcoid")}, {Name: []byte("spclocation")}, {Name: []byte("size")}}},
		&pgproto3.DataRow{Values: [][]byte{nil, nil, nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
		&pgproto3.CopyOutResponse{},
		&pgproto3.CopyData{Data: []byte("nbase.tar\x00\x00")},
	}
}

func TestBaseBackup_Read_ErrServer(t *testing.T) {
	script := append(backupStart(),
		&pgproto3.CopyData{Data: []byte("dsome tar bytes")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "58P01", Message: "could not open file"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	conn := connectFake(t, "16.2", script)
	bb, err := conn.StartBaseBackup(context.Background(), BaseBackupOptions{Label: "x"})
	if err != nil {
		t.Fatalf("StartBaseBackup: %v", err)
	}
	if bb.StartLSN.String() != "0/2000028" || bb.Timeline != 1 || len(bb.Tablespaces) != 1 || bb.Tablespaces[0].Size != -1 {
		t.Fatalf("backup = %+v", bb)
	}
	a, err := bb.NextArchive(context.Background())
	if err != nil || a.Name != "base.tar" || a.Kind != ArchiveTablespace {
		t.Fatalf("NextArchive = %+v, %v", a, err)
	}
	got, err := io.ReadAll(bb)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "58P01" {
		t.Fatalf("Read: %v, want the server's error", err)
	}
	if string(got) != "some tar bytes" {
		t.Errorf("read %q before the error", got)
	}
	if _, err := bb.NextArchive(context.Background()); !errors.As(err, &pgErr) {
		t.Errorf("NextArchive after the error: %v", err)
	}
	// The server is ready again: the connection stays open.
	if conn.PgConn().IsClosed() {
		t.Error("connection closed after a server error")
	}
}

// TestBaseBackup_Finish_ErrChecksum: the server's WARNINGs during the
// backup (not its NOTICEs), the first maxWarnings of them, go into the
// ChecksumError of an XX001 that ends the backup after the end position.
func TestBaseBackup_Finish_ErrChecksum(t *testing.T) {
	script := append(backupStart(), &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Message: "not a warning"})
	for i := range maxWarnings + 2 {
		script = append(script,
			&pgproto3.CopyData{Data: []byte("dtar")},
			&pgproto3.NoticeResponse{Severity: "WARNUNG", SeverityUnlocalized: "WARNING", Message: fmt.Sprintf("block %d", i)})
	}
	script = append(script, &pgproto3.CopyDone{},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("recptr")}, {Name: []byte("tli")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("0/3000100"), []byte("1")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX001", Message: "checksum verification failure during base backup"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	conn := connectFake(t, "16.2", script)
	bb, err := conn.StartBaseBackup(context.Background(), BaseBackupOptions{Label: "x"})
	if err != nil {
		t.Fatalf("StartBaseBackup: %v", err)
	}
	if _, err := bb.NextArchive(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(bb); err != nil {
		t.Fatalf("Read: %v", err)
	}
	_, _, err = bb.Finish(context.Background())
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("Finish: %v, want a ChecksumError", err)
	}
	if got, want := len(ce.Warnings), maxWarnings; got != want {
		t.Errorf("%d warnings, want %d", got, want)
	}
	if ce.Warnings[0] != "block 0" || ce.Omitted != 2 || ce.Err.Code != "XX001" {
		t.Errorf("ChecksumError = %+v", ce)
	}
	for _, want := range []string{"(SQLSTATE XX001); the server's warnings: block 0; block 1;", "block 9; and 2 more warnings"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "not a warning") {
		t.Errorf("error %q holds a NOTICE", err)
	}
	// Finish, not the caller, skipped to the end of the archives.
	if ce.Ended || ce.End != 0 {
		t.Errorf("ChecksumError ended at %s (Ended %v), want not ended: the archives were not all read", ce.End, ce.Ended)
	}
}

// checksumWarnings are the WARNINGs basebackup.c sends for six failing
// blocks of one file and one of a tablespace's file, with the totals.
func checksumWarnings() []pgproto3.BackendMessage {
	warn := func(msg string) pgproto3.BackendMessage {
		return &pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000", Message: msg}
	}
	var out []pgproto3.BackendMessage
	for blk := range 5 {
		out = append(out, warn(fmt.Sprintf(`checksum verification failed in file "./base/5/16384", block %d: calculated 1A2B but expected 3C4D`, blk)))
	}
	return append(out,
		warn(`further checksum verification failures in file "./base/5/16384" will not be reported`),
		warn(`file "./base/5/16384" has a total of 6 checksum verification failures`),
		&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Message: `checksum verification failed in file "./base/5/1", block 1: calculated 1 but expected 2`},
		warn(`checksum verification failed in file "/srv/ts/PG_16_202307071/5/16390", block 2: calculated 9 but expected A`),
		warn(`7 total checksum verification failures`),
	)
}

// finishChecksums runs a BASE_BACKUP against a scripted server of version
// whose one archive comes with the messages before, then the end position
// 0/3000100 on timeline 1, the messages after and the error fail, and
// returns the connection and Finish's error.
func finishChecksums(t *testing.T, version string, before, after []pgproto3.BackendMessage, fail *pgproto3.ErrorResponse) (*Conn, error) {
	t.Helper()
	script := append(backupStart(), &pgproto3.CopyData{Data: []byte("dtar")})
	script = append(script, before...)
	script = append(script, &pgproto3.CopyDone{},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("recptr")}, {Name: []byte("tli")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("0/3000100"), []byte("1")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")})
	script = append(script, after...)
	script = append(script, fail, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	conn := connectFake(t, version, script)
	bb, err := conn.StartBaseBackup(context.Background(), BaseBackupOptions{Label: "x"})
	if err != nil {
		t.Fatalf("StartBaseBackup: %v", err)
	}
	readAll(t, bb)
	_, _, err = bb.Finish(context.Background())
	return conn, err
}

// TestBaseBackup_Finish_ChecksumFailures: an XX001 after the end position
// of a backup whose archives were all read is Ended, with the end
// position, and the failures the warnings name, file by file.
func TestBaseBackup_Finish_ChecksumFailures(t *testing.T) {
	conn, err := finishChecksums(t, "16.2", checksumWarnings(), nil,
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX001", Message: "checksum verification failure during base backup"})
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("Finish: %v, want a ChecksumError", err)
	}
	if !ce.Ended || ce.End.String() != "0/3000100" || ce.Timeline != 1 {
		t.Errorf("ChecksumError ended %v at %s on timeline %d, want 0/3000100 on 1", ce.Ended, ce.End, ce.Timeline)
	}
	want := []PageFailures{
		{File: "./base/5/16384", Count: 6, Blocks: []uint32{0, 1, 2, 3, 4}},
		{File: "/srv/ts/PG_16_202307071/5/16390", Count: 1, Blocks: []uint32{2}},
	}
	if diff := cmp.Diff(want, ce.Files); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if ce.Blocks != 7 {
		t.Errorf("Blocks = %d, want 7", ce.Blocks)
	}
	if conn.PgConn().IsClosed() {
		t.Error("connection closed after the server's error")
	}
}

// TestBaseBackup_Finish_ChecksumFailuresTranslated: the warnings of a
// server whose lc_messages is German (PostgreSQL 15's translations) name
// no file hoard can read, but the total it sends after the end position
// counts the blocks, and without that total (one failing block) the
// count is 1; the files are unknown. Before, the count was 1 whatever
// the server's total.
func TestBaseBackup_Finish_ChecksumFailuresTranslated(t *testing.T) {
	warn := func(msg string) pgproto3.BackendMessage {
		return &pgproto3.NoticeResponse{Severity: "WARNUNG", SeverityUnlocalized: "WARNING", Code: "01000", Message: msg}
	}
	for _, tt := range []struct {
		name          string
		before, after []pgproto3.BackendMessage
		want          int64
	}{
		{"Total", []pgproto3.BackendMessage{
			warn("Prüfsummenüberprüfung fehlgeschlagen in Datei »./base/5/16384«, Block 3: berechnet 41C7, aber erwartet C4BB"),
			warn("Prüfsummenüberprüfung fehlgeschlagen in Datei »./base/5/16384«, Block 5: berechnet 4904, aber erwartet E022"),
			warn("Datei »./base/5/16384« hat insgesamt 2 Prüfsummenfehler"),
			warn("Prüfsummenüberprüfung fehlgeschlagen in Datei »./base/5/1«, Block 1: berechnet 1, aber erwartet 2"),
		}, []pgproto3.BackendMessage{warn("3 Prüfsummenfehler insgesamt")}, 3},
		{"One", []pgproto3.BackendMessage{
			warn("Prüfsummenüberprüfung fehlgeschlagen in Datei »./base/5/16384«, Block 3: berechnet 41C7, aber erwartet C4BB"),
			warn("noch nicht alle benötigten WAL-Segmente wurden archiviert (60 Sekunden abgelaufen)"),
		}, nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := finishChecksums(t, "15.18", tt.before, tt.after,
				&pgproto3.ErrorResponse{Severity: "FEHLER", Code: "XX001", Message: "Prüfsummenüberprüfung bei der Basissicherung fehlgeschlagen"})
			var ce *ChecksumError
			if !errors.As(err, &ce) {
				t.Fatalf("Finish: %v, want a ChecksumError", err)
			}
			if !ce.Ended || ce.Blocks != tt.want || len(ce.Files) != 0 || !ce.FilesUnknown {
				t.Errorf("ChecksumError ended %v, %d blocks, files %+v (unknown %v), want ended, %d blocks, files unknown",
					ce.Ended, ce.Blocks, ce.Files, ce.FilesUnknown, tt.want)
			}
		})
	}
}

// TestBaseBackup_Finish_ErrChecksumBeforeEnd: an XX001 before the end
// position (not where basebackup.c sends it) is not Ended: the backup is
// not known to be complete.
func TestBaseBackup_Finish_ErrChecksumBeforeEnd(t *testing.T) {
	script := append(backupStart(), &pgproto3.CopyData{Data: []byte("dtar")})
	script = append(script, checksumWarnings()...)
	script = append(script, &pgproto3.CopyDone{},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX001", Message: "checksum verification failure during base backup"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	conn := connectFake(t, "16.2", script)
	bb, err := conn.StartBaseBackup(context.Background(), BaseBackupOptions{Label: "x"})
	if err != nil {
		t.Fatalf("StartBaseBackup: %v", err)
	}
	readAll(t, bb)
	_, _, err = bb.Finish(context.Background())
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("Finish: %v, want a ChecksumError", err)
	}
	if ce.Ended || ce.End != 0 {
		t.Errorf("ChecksumError ended %v at %s, want not ended", ce.Ended, ce.End)
	}
	if ce.Blocks != 7 || len(ce.Files) != 2 {
		t.Errorf("ChecksumError %d blocks in %v, want 7 in 2 files", ce.Blocks, ce.Files)
	}
}

// readAll reads every archive of bb to its end, as a caller storing the
// backup does.
func readAll(t *testing.T, bb *BaseBackup) {
	t.Helper()
	for {
		_, err := bb.NextArchive(context.Background())
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("NextArchive: %v", err)
		}
		if _, err := io.ReadAll(bb); err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
}

func TestBaseBackup_Read_ErrProtocol(t *testing.T) {
	script := append(backupStart(), &pgproto3.CopyData{Data: []byte("zwhat")})
	conn := connectFake(t, "15.0", script)
	bb, err := conn.StartBaseBackup(context.Background(), BaseBackupOptions{Label: "x"})
	if err != nil {
		t.Fatalf("StartBaseBackup: %v", err)
	}
	if _, err := bb.NextArchive(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(bb); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Read: %v, want ErrProtocol", err)
	}
	if !conn.PgConn().IsClosed() {
		t.Error("connection left open after a protocol violation")
	}
}

func TestConn_StartBaseBackup_ErrProtocol(t *testing.T) {
	// An old-form server that lists no tablespace at all.
	script := []pgproto3.BackendMessage{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("recptr")}, {Name: []byte("tli")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("0/2000028"), []byte("1")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("spcoid")}, {Name: []byte("spclocation")}, {Name: []byte("size")}}},
		&pgproto3.CopyOutResponse{},
	}
	conn := connectFake(t, "14.9", script)
	if _, err := conn.StartBaseBackup(context.Background(), BaseBackupOptions{Label: "x"}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("StartBaseBackup: %v, want ErrProtocol", err)
	}
}

// TestConn_ReceiveMessage_ServerShutdown: a walsender shutting down ends
// COPY BOTH with CommandComplete alone; that is ErrStreamEnded, not a
// protocol violation.
func TestConn_ReceiveMessage_ServerShutdown(t *testing.T) {
	script := []pgproto3.BackendMessage{
		&pgproto3.CopyBothResponse{},
		&pgproto3.CopyData{Data: append([]byte{'k'}, make([]byte, 17)...)},
		&pgproto3.CommandComplete{CommandTag: []byte("COPY 0")},
	}
	conn := connectFake(t, "16.2", script)
	if err := conn.StartReplication(context.Background(), StartOptions{Start: 0x2000000}); err != nil {
		t.Fatalf("StartReplication: %v", err)
	}
	if m, err := conn.ReceiveMessage(context.Background()); err != nil || m.Kind != MessageKeepalive {
		t.Fatalf("ReceiveMessage = %+v, %v; want a keepalive", m, err)
	}
	_, err := conn.ReceiveMessage(context.Background())
	if !errors.Is(err, ErrStreamEnded) || errors.Is(err, ErrProtocol) {
		t.Fatalf("ReceiveMessage after CommandComplete: %v, want ErrStreamEnded", err)
	}
}

// TestConn_EndCopy: ending COPY BOTH. When we end it (StopReplication),
// the WAL in flight and the server's CopyDone are skipped and a timeline
// that ended meanwhile is reported; when the server ends it
// (ReceiveMessage reads its CopyDone), the end of the timeline is
// reported, a stream that ends without one is ErrStreamEnded, and a
// message that has no place there is a protocol violation.
func TestConn_EndCopy(t *testing.T) {
	keepalive := &pgproto3.CopyData{Data: append([]byte{'k'}, make([]byte, 17)...)}
	nextTimeline := []pgproto3.BackendMessage{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("next_tli")}, {Name: []byte("next_tli_startpos")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("2"), []byte("0/3000028")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
	}
	ready := &pgproto3.ReadyForQuery{TxStatus: 'I'}
	copyDone := &pgproto3.CopyDone{}
	started := &pgproto3.CommandComplete{CommandTag: []byte("START_STREAMING")}
	for _, tc := range []struct {
		name    string
		stop    bool // StopReplication after the first message; else ReceiveMessage until an error
		script  []pgproto3.BackendMessage
		eot     bool  // want an *EndOfTimeline to timeline 2
		want    error // else want an error wrapping this (nil: none)
		notWant error
	}{
		{name: "StopOK", stop: true, script: []pgproto3.BackendMessage{keepalive, keepalive, copyDone, started, ready}},
		{name: "StopEndOfTimeline", stop: true, eot: true,
			script: append(append([]pgproto3.BackendMessage{keepalive, copyDone}, nextTimeline...), started, ready)},
		{name: "ServerEndOfTimeline", eot: true,
			script: append(append([]pgproto3.BackendMessage{keepalive, copyDone}, nextTimeline...), started, ready)},
		{name: "ErrServerStreamEnded", want: ErrStreamEnded, notWant: ErrProtocol,
			script: []pgproto3.BackendMessage{keepalive, copyDone, started, ready}},
		{name: "ErrServerProtocol", want: ErrProtocol,
			script: []pgproto3.BackendMessage{keepalive, copyDone, copyDone, started, ready}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			conn := connectFake(t, "16.2", append([]pgproto3.BackendMessage{&pgproto3.CopyBothResponse{}}, tc.script...))
			if err := conn.StartReplication(ctx, StartOptions{Start: 0x2000000}); err != nil {
				t.Fatalf("StartReplication: %v", err)
			}
			if m, err := conn.ReceiveMessage(ctx); err != nil || m.Kind != MessageKeepalive {
				t.Fatalf("ReceiveMessage = %+v, %v; want a keepalive", m, err)
			}
			var err error
			if tc.stop {
				err = conn.StopReplication(ctx)
			} else {
				_, err = conn.ReceiveMessage(ctx)
			}
			switch eot, ok := IsEndOfTimeline(err); {
			case tc.eot:
				if !ok || eot.NextTimeline != 2 || eot.SwitchLSN != 0x3000028 {
					t.Fatalf("got %v, want the end of timeline 1 (next 2 at 0/3000028)", err)
				}
			case tc.want == nil:
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
			case !errors.Is(err, tc.want) || (tc.notWant != nil && errors.Is(err, tc.notWant)):
				t.Fatalf("got %v, want %v (and not %v)", err, tc.want, tc.notWant)
			}
		})
	}
}

// TestBaseBackup_Finish_ErrChecksumArchiveMissing: an XX001 after the end
// position is Ended only when the server sent every archive its
// tablespace list names and the manifest asked for, as
// perform_base_backup always does: a backup that lacks one is not
// complete, whatever the caller read.
func TestBaseBackup_Finish_ErrChecksumArchiveMissing(t *testing.T) {
	header := func(spcs ...[]byte) []pgproto3.BackendMessage {
		out := []pgproto3.BackendMessage{
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("recptr")}, {Name: []byte("tli")}}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("0/2000028"), []byte("1")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("spcoid")}, {Name: []byte("spclocation")}, {Name: []byte("size")}}},
		}
		for _, oid := range spcs {
			out = append(out, &pgproto3.DataRow{Values: [][]byte{oid, []byte("/srv/ts" + string(oid)), nil}})
		}
		return append(out, &pgproto3.DataRow{Values: [][]byte{nil, nil, nil}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT")})
	}
	end := []pgproto3.BackendMessage{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("recptr")}, {Name: []byte("tli")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("0/3000100"), []byte("1")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX001", Message: "checksum verification failure during base backup"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	}
	tarData := &pgproto3.CopyData{Data: make([]byte, 1024)}
	for _, tc := range []struct {
		name     string
		version  string
		manifest bool
		script   []pgproto3.BackendMessage // after the start position and the tablespace list
		spcs     [][]byte
		ended    bool
	}{
		{"OK", "16.2", true, []pgproto3.BackendMessage{&pgproto3.CopyOutResponse{},
			&pgproto3.CopyData{Data: []byte("n16400.tar\x00/srv/ts16400\x00")}, &pgproto3.CopyData{Data: []byte("dtar")},
			&pgproto3.CopyData{Data: []byte("nbase.tar\x00\x00")}, &pgproto3.CopyData{Data: []byte("dtar")},
			&pgproto3.CopyData{Data: []byte("m")}, &pgproto3.CopyData{Data: []byte("d{}")}, &pgproto3.CopyDone{}},
			[][]byte{[]byte("16400")}, true},
		{"ErrTablespace", "16.2", false, []pgproto3.BackendMessage{&pgproto3.CopyOutResponse{},
			&pgproto3.CopyData{Data: []byte("nbase.tar\x00\x00")}, &pgproto3.CopyData{Data: []byte("dtar")}, &pgproto3.CopyDone{}},
			[][]byte{[]byte("16400")}, false},
		{"ErrManifest", "16.2", true, []pgproto3.BackendMessage{&pgproto3.CopyOutResponse{},
			&pgproto3.CopyData{Data: []byte("nbase.tar\x00\x00")}, &pgproto3.CopyData{Data: []byte("dtar")}, &pgproto3.CopyDone{}},
			nil, false},
		{"OldFormOK", "14.9", true, []pgproto3.BackendMessage{
			&pgproto3.CopyOutResponse{}, tarData, &pgproto3.CopyDone{},
			&pgproto3.CopyOutResponse{}, &pgproto3.CopyData{Data: []byte("{}")}, &pgproto3.CopyDone{}},
			nil, true},
		{"OldFormErrTablespace", "14.9", false, []pgproto3.BackendMessage{
			&pgproto3.CopyOutResponse{}, tarData, &pgproto3.CopyDone{}},
			[][]byte{[]byte("16400")}, false},
		{"OldFormErrManifest", "14.9", true, []pgproto3.BackendMessage{
			&pgproto3.CopyOutResponse{}, tarData, &pgproto3.CopyDone{}},
			nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := append(append(header(tc.spcs...), tc.script...), end...)
			conn := connectFake(t, tc.version, script)
			bb, err := conn.StartBaseBackup(context.Background(), BaseBackupOptions{Label: "x", Manifest: tc.manifest})
			if err != nil {
				t.Fatalf("StartBaseBackup: %v", err)
			}
			readAll(t, bb)
			_, _, err = bb.Finish(context.Background())
			var ce *ChecksumError
			if !errors.As(err, &ce) {
				t.Fatalf("Finish: %v, want a ChecksumError", err)
			}
			if ce.Ended != tc.ended {
				t.Errorf("ChecksumError Ended = %v (at %s), want %v", ce.Ended, ce.End, tc.ended)
			}
		})
	}
}
