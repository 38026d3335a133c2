package command

import (
	"context"
	"net"
	"slices"
	"strings"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/storage"
)

// nestedSite returns, for the site called name, the first other site of
// cfg whose objects its retention would take for its own: one whose keys
// are the site's (the same storage and prefix however spelled, siteKeys;
// only when both sites are active: an inactive one is a read-only view of
// the same archive), or lie inside one of its folders (archive.SiteDirs),
// as a site whose prefix is s/basebackup_chunk/t beside site s. Retention deletes what
// it finds in the site's basebackup_chunk/ folder without a backup of
// its name once a day old: the other site's WAL and backups. A site
// below the other outside its folders (s and s/t) is no such site: every
// listing of a site but archive-copy's is of one of its folders, and
// archive.Copy copies those alone. The error names both sites, the keys
// and the prefix to change; nil when there is none.
//
// Two names of one server are one (storage.SameServer); where the two
// storages differ only in a host name that does not resolve, the site
// is refused too, as whether they are one server cannot be told.
//
// Only the sites of one configuration are compared: a site of another
// configuration (another host's) in the same storage cannot be seen
// from here.
func nestedSite(ctx context.Context, cfg *config.Config, name string) error {
	site := cfg.BackupSites[name]
	place, root := siteKeys(site)
	for _, other := range cfg.SiteNames() {
		if other == name {
			continue
		}
		_, r := siteKeys(cfg.BackupSites[other])
		if !strings.HasPrefix(r, root) {
			continue
		}
		dir, _, _ := strings.Cut(strings.TrimPrefix(r, root), "/")
		if r == root && (!site.Active || !cfg.BackupSites[other].Active) {
			// An inactive site is a read-only view of the archive under
			// the same keys, as a restore host's configuration names it
			// beside the active one: the objects the active site's
			// retention deletes are its own, and the inactive one's
			// retention never deletes.
			continue
		}
		if r != root && !slices.Contains(archive.SiteDirs, dir) {
			continue
		}
		// The same keys, or keys inside one of the site's folders: on
		// the same server? Two names of one host are one
		// (storage.SameServer); when that cannot be told, the retention
		// is refused, as deleting the other site's objects is what a
		// wrong "another server" would allow.
		same, err := storage.SameServer(ctx, net.DefaultResolver, site.ObjectStorage.StorageConfig(), cfg.BackupSites[other].ObjectStorage.StorageConfig())
		if err != nil {
			return usagef("make the host names resolve here, or name the server the same way in both sites' object_storage",
				"site %s's keys (%s) lie in site %s's (%s) in the same storage but for the server's host, and %v: site %s's retention could delete site %s's objects as its own",
				other, shownKeys(place, r), name, shownKeys(place, root), err, name, other)
		}
		if !same {
			continue
		}
		if r == root {
			return usagef("give one of them another prefix (backup_sites.<site>.prefix or object_storage.prefix), or remove the one that is not this archive's from the configuration",
				"sites %s and %s store their objects under the same keys (%s) in the same storage: the retention of either would delete the other's backups and WAL as its own",
				name, other, shownKeys(place, root))
		}
		return usagef("give site "+other+" a prefix outside site "+name+"'s folders (backup_sites."+other+".prefix), or move its objects there with hoard archive-copy",
			"site %s's keys (%s) lie inside the %s/ folder of site %s (%s) in the same storage: a site's folders hold its own objects only, "+
				"and the retention of site %s deletes what it finds in them and does not know (a chunk folder of no backup) as its own",
			other, shownKeys(place, r), dir, name, shownKeys(place, root+dir+"/"), name)
	}
	return nil
}

// shownKeys is root, keys in the storage at place (siteKeys), as a user
// reads them: a local directory's (storage.Config.Where's server "file")
// with its leading slash.
func shownKeys(place, root string) string {
	if place == "file" {
		return "/" + root
	}
	return root
}
