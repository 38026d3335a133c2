package daemon

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAlerts_RaiseClear(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "alerts") // created on first Raise
	a := NewAlerts(dir)
	if got := a.Active(); len(got) != 0 {
		t.Fatalf("Active = %v before any Raise", got)
	}

	for range 2 { // idempotent
		if err := a.Raise(AlertUploadRetries); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Raise("disk_space_low"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, AlertUploadRetries))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "alert"; got != want {
		t.Errorf("alert file holds %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"disk_space_low", AlertUploadRetries}, a.Active()); diff != "" {
		t.Errorf("Active (-want +got):\n%s", diff)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries, want the 2 alert files (no temporary files)", len(entries))
	}

	for range 2 { // idempotent, and clearing what is not raised is fine
		if err := a.Clear(AlertUploadRetries); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Clear(AlertAuthentication); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, AlertUploadRetries)); !os.IsNotExist(err) {
		t.Errorf("alert file still there after Clear: %v", err)
	}
	if diff := cmp.Diff([]string{"disk_space_low"}, a.Active()); diff != "" {
		t.Errorf("Active (-want +got):\n%s", diff)
	}

	// A file deleted behind our back is recreated by the next Raise.
	if err := os.Remove(filepath.Join(dir, "disk_space_low")); err != nil {
		t.Fatal(err)
	}
	if err := a.Raise("disk_space_low"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "disk_space_low")); err != nil {
		t.Error(err)
	}
}

func TestAlerts_ActiveLeftByEarlierRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, AlertConfiguration), []byte("alert"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unrelated.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := NewAlerts(dir)
	if diff := cmp.Diff([]string{AlertConfiguration}, a.Active()); diff != "" {
		t.Errorf("Active (-want +got):\n%s", diff)
	}
	if err := a.Clear(AlertConfiguration); err != nil {
		t.Fatal(err)
	}
	if got := a.Active(); len(got) != 0 {
		t.Errorf("Active = %v after Clear", got)
	}
}

func TestAlerts_Concurrent(t *testing.T) {
	a := NewAlerts(t.TempDir())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if i%2 == 0 {
					_ = a.Raise(AlertUploadRetries)
				} else {
					_ = a.Clear(AlertUploadRetries)
				}
			}
		}()
	}
	wg.Wait()
	if err := a.Raise(AlertUploadRetries); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{AlertUploadRetries}, a.Active()); diff != "" {
		t.Errorf("Active (-want +got):\n%s", diff)
	}
}

func TestAlerts_ErrName(t *testing.T) {
	a := NewAlerts(t.TempDir())
	for _, name := range []string{"", ".", "..", "../x", "a/b", `a\b`, "a\x00b"} {
		if err := a.Raise(name); err == nil {
			t.Errorf("Raise(%q) succeeded", name)
		}
		if err := a.Clear(name); err == nil {
			t.Errorf("Clear(%q) succeeded", name)
		}
	}
}

func TestAlerts_ErrDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := NewAlerts(file).Raise(AlertUploadRetries); err == nil {
		t.Error("Raise into a regular file's path succeeded")
	}
}
