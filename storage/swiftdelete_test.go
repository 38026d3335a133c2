package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ncw/swift/v2"

	"github.com/hoardbackup/hoard/storage"
)

// testSwiftOwnSegments: Delete, and a Put that replaces a large object,
// delete segments only in the object's own segment folders. Someone who
// can write the container but not delete from it could otherwise plant a
// manifest whose X-Object-Manifest names the container, a folder of other
// objects, another object's segments or another container, and have
// retention (any Delete, or Put over the name) delete what it names; or a
// Static Large Object whose segment list names other objects. Such an
// object's manifest alone goes, and OnSkip names the header value.
func testSwiftOwnSegments(t *testing.T, c storage.Config, conn *swift.Connection) {
	ctx := context.Background()
	cc := c
	cc.ContainerName, cc.Prefix = "hoard-confine", "confine"
	st, err := storage.Open(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var skipped []string
	if sw, ok := st.(*storage.Swift); ok {
		sw.OnSkip = func(key, why string) { skipped = append(skipped, key+": "+why) }
	}
	const other = "hoard-other"
	for _, name := range []string{cc.ContainerName, other} {
		if err := conn.ContainerCreate(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The objects a planted manifest must not take with it: a small
	// object, a large object rohmu wrote whose segments folder starts
	// with the planted object's name, an object in another container.
	const partial = "confine/site/xlog/000000010000000000000001.partial"
	const partialSegs = "confine/site/xlog_segments/000000010000000000000001.partial/"
	victims := map[[2]string]string{
		{cc.ContainerName, "confine/site/basebackup/victim"}: "victim",
		{cc.ContainerName, partialSegs + "00000001"}:         "partial 1",
		{cc.ContainerName, partialSegs + "00000002"}:         "partial 2",
		{other, "keep"}: "keep",
	}
	store := func(t *testing.T) {
		t.Helper()
		for k, v := range victims {
			if err := conn.ObjectPutString(ctx, k[0], k[1], v, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.ObjectPut(ctx, cc.ContainerName, partial, bytes.NewReader(nil), false, "", "", swift.Headers{
			"X-Object-Manifest": cc.ContainerName + "/" + partialSegs,
		}); err != nil {
			t.Fatal(err)
		}
	}
	intact := func(t *testing.T) {
		t.Helper()
		for k, v := range victims {
			if got, err := conn.ObjectGetString(ctx, k[0], k[1]); err != nil || got != v {
				t.Errorf("%s/%s after it: %q, %v; want %q", k[0], k[1], got, err, v)
			}
		}
		if got, err := conn.ObjectGetString(ctx, cc.ContainerName, partial); err != nil || got != "partial 1partial 2" {
			t.Errorf("%s after it: %q, %v; want rohmu's large object whole", partial, got, err)
		}
	}
	const key = "site/xlog/000000010000000000000001"
	const name = "confine/" + key
	plant := func(t *testing.T, manifest string) {
		t.Helper()
		store(t)
		if _, err := conn.ObjectPut(ctx, cc.ContainerName, name, bytes.NewReader(nil), false, "", "", swift.Headers{
			"X-Object-Manifest": manifest,
		}); err != nil {
			t.Fatal(err)
		}
		skipped = nil
	}
	warned := func(t *testing.T, what string) {
		t.Helper()
		if len(skipped) != 1 || !strings.HasPrefix(skipped[0], key+": ") || !strings.Contains(skipped[0], what) {
			t.Errorf("OnSkip calls = %q, want one for %s naming %q", skipped, key, what)
		}
	}
	for _, tc := range []struct{ name, manifest string }{
		{"Container", cc.ContainerName + "/c"}, // every object under the prefix
		{"Folder", cc.ContainerName + "/confine/site/basebackup/"},
		{"OtherSegments", cc.ContainerName + "/" + partialSegs},
		{"SharedPrefix", cc.ContainerName + "/confine/site/xlog_segments/000000010000000000000001"}, // its own folders and the .partial's
		{"OtherContainer", other + "/k"},
	} {
		manifest := tc.manifest
		t.Run(tc.name+"/Delete", func(t *testing.T) {
			plant(t, manifest)
			if err := st.Delete(ctx, key); err != nil {
				t.Fatalf("Delete of a manifest naming %s: %v", manifest, err)
			}
			if _, _, err := conn.Object(ctx, cc.ContainerName, name); !errors.Is(err, swift.ObjectNotFound) {
				t.Errorf("the planted manifest after Delete: %v, want it gone", err)
			}
			intact(t)
			warned(t, manifest)
		})
		t.Run(tc.name+"/Put", func(t *testing.T) {
			plant(t, manifest)
			if err := st.Put(ctx, key, strings.NewReader("new"), nil); err != nil {
				t.Fatalf("Put over a manifest naming %s: %v", manifest, err)
			}
			if got := read(t, st, key); string(got) != "new" {
				t.Errorf("after the Put: %q, want new", got)
			}
			intact(t)
			warned(t, manifest)
		})
	}
	t.Run("StaticLargeObject", func(t *testing.T) {
		store(t)
		seg := "/" + cc.ContainerName + "/confine/site/basebackup/victim"
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, conn.StorageUrl+"/"+cc.ContainerName+"/"+name+"?multipart-manifest=put",
			strings.NewReader(fmt.Sprintf(`[{"path": %q}]`, seg)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Auth-Token", conn.AuthToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("SLO manifest PUT: %s", resp.Status)
		}
		if got, err := conn.ObjectGetString(ctx, cc.ContainerName, name); err != nil || got != "victim" {
			t.Fatalf("the planted SLO reads %q, %v; want the victim's bytes", got, err)
		}
		skipped = nil
		if err := st.Delete(ctx, key); err != nil {
			t.Fatalf("Delete of a Static Large Object: %v", err)
		}
		if _, _, err := conn.Object(ctx, cc.ContainerName, name); !errors.Is(err, swift.ObjectNotFound) {
			t.Errorf("the planted manifest after Delete: %v, want it gone", err)
		}
		intact(t)
		warned(t, "Static Large Object")
	})
}
