package command

import (
	"slices"
	"strings"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
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
// Only the sites of one configuration are compared: a site of another
// configuration (another host's) in the same storage cannot be seen
// from here.
func nestedSite(cfg *config.Config, name string) error {
	site := cfg.BackupSites[name]
	place, root := siteKeys(site)
	for _, other := range cfg.SiteNames() {
		if other == name {
			continue
		}
		p, r := siteKeys(cfg.BackupSites[other])
		if p != place || !strings.HasPrefix(r, root) {
			continue
		}
		if r == root {
			if !site.Active || !cfg.BackupSites[other].Active {
				// An inactive site is a read-only view of the archive
				// under the same keys, as a restore host's configuration
				// names it beside the active one: the objects the active
				// site's retention deletes are its own, and the inactive
				// one's retention never deletes.
				continue
			}
			return usagef("give one of them another prefix (backup_sites.<site>.prefix or object_storage.prefix), or remove the one that is not this archive's from the configuration",
				"sites %s and %s store their objects under the same keys (%s) in the same storage: the retention of either would delete the other's backups and WAL as its own",
				name, other, shownKeys(place, root))
		}
		dir, _, _ := strings.Cut(strings.TrimPrefix(r, root), "/")
		if slices.Contains(archive.SiteDirs, dir) {
			return usagef("give site "+other+" a prefix outside site "+name+"'s folders (backup_sites."+other+".prefix), or move its objects there with hoard archive-copy",
				"site %s's keys (%s) lie inside the %s/ folder of site %s (%s) in the same storage: a site's folders hold its own objects only, "+
					"and the retention of site %s deletes what it finds in them and does not know (a chunk folder of no backup) as its own",
				other, shownKeys(place, r), dir, name, shownKeys(place, root+dir+"/"), name)
		}
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
