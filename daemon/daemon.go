package daemon

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/metrics"
	"github.com/hoardbackup/hoard/walstream"
)

// unhealthyAfter is how long a streaming site may be disconnected before
// /healthz reports the daemon unhealthy (a server restart takes seconds).
const unhealthyAfter = time.Minute

// Restarts of a site stopped by an error (runSites): the first after
// siteRetryMin, doubling up to siteRetryMax. Variables so that a test
// can shorten them.
var (
	siteRetryMin = time.Minute
	siteRetryMax = 15 * time.Minute
)

// siteProvenAfter is how long a restarted run of a site stopped by an
// error must run, and a streaming site's receiver be connected, before
// the failure counts as over (checkRestarted): a receiver whose start
// position the server no longer has (walstream.ErrWALRemoved) is
// connected for a moment before the server's error arrives. A variable
// so that a test can shorten it.
var siteProvenAfter = time.Minute

// siteFailure is a site whose run ended with an error while the daemon
// ran its other sites on. It lasts until a restarted run has proved
// itself (checkRestarted), or a reload restarts or removes the site.
type siteFailure struct {
	sup *supervisor // the run that failed last
	err error
	at  time.Time
	n   int // runs in a row that failed
	// retryAt is when runSites starts the site again; zero while that
	// run is under way.
	retryAt time.Time
}

// daemon is the state Run shares between its parts.
type daemon struct {
	opts    Options
	log     zerolog.Logger
	metrics *metrics.Registry
	alerts  *Alerts
	started time.Time

	mu    sync.Mutex
	sites []Site                 // the current configuration, sorted by name
	sups  map[string]*supervisor // running (or starting) supervisors
	// raisedBy holds, per alert name, the sites whose condition raised it:
	// an alert file is removed when no site is left holding it.
	raisedBy map[string]map[string]bool
	// down records since when a streaming site has been disconnected.
	down map[string]time.Time
	// failed holds the sites stopped by an error (siteFailure).
	failed map[string]*siteFailure
	// reqs holds the recent basebackup requests and what became of them.
	reqs requestLog
	// formerSlots holds, per site, the newest creation of its slot on a
	// server that lacked it (walstream.FormerSlot) since the daemon
	// started: a restarted receiver starts without it (formerSlot).
	formerSlots map[string]*walstream.FormerSlot
	// orphans are the spools of sites the daemon does not run that
	// hold WAL no run stored, as the last look found them
	// (checkOrphanSpools).
	orphans []OrphanSpool
	// leftSpools are the spools of streaming sites a reload of this
	// process let go with their WAL stored: the segment in progress
	// left in each is stored (findOrphanSpools).
	leftSpools map[string]bool
}

// Run runs the daemon until ctx ends: one supervisor per active site (WAL
// receiver, basebackups, retention), the state file, StatsD and the HTTP
// server, under one errgroup. A site whose run ends with an error (its
// spool or folder another daemon's, its archive not opening, a WAL
// receiver that cannot continue) stops alone while other active sites
// run: it raises site_stopped_error, turns /healthz unhealthy and is
// started again on a backoff or at a reload (runSites). When no active
// site is left running, its error stops everything and is returned, as
// does an HTTP address that cannot be bound. After ctx ends,
// Run waits for every part to stop: WAL receivers fsync, report their
// flush position, store the segment in progress as a .partial and get
// DrainTimeout for it and the uploads queued before it; a
// basebackup in progress is abandoned (its chunks deleted). It returns nil
// after a shutdown by ctx.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	d := &daemon{
		opts:     o,
		log:      o.Logger.With().Str("component", "daemon").Logger(),
		metrics:  metrics.New(o.MetricLabels),
		started:  time.Now(),
		sups:     map[string]*supervisor{},
		raisedBy: map[string]map[string]bool{},
		down:     map[string]time.Time{},
		failed:   map[string]*siteFailure{},

		formerSlots: map[string]*walstream.FormerSlot{},
		leftSpools:  map[string]bool{},
	}
	if o.AlertDir != "" {
		d.alerts = NewAlerts(o.AlertDir)
	}
	startedMetric(d.metrics).Set(float64(d.started.Unix()))

	var sd *metrics.StatsD
	if o.StatsD != nil {
		var err error
		if sd, err = metrics.NewStatsD(o.StatsD.Host, o.StatsD.Port, o.StatsD.Format, o.StatsD.Tags); err != nil {
			return fmt.Errorf("statsd: %w", err)
		}
		defer sd.Close()
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.runSites(gctx, o.Sites) })
	g.Go(func() error { d.monitor(gctx, sd); return nil })
	if o.HTTP != nil {
		h := o.HTTP
		g.Go(func() error {
			return ServeHTTP(gctx, HTTPOptions{
				Address: h.Address, Port: h.Port, Username: h.Username, Password: h.Password,
				TLSCertFile: h.TLSCertFile, TLSKeyFile: h.TLSKeyFile,
				Status:        func() any { return d.status() },
				Metrics:       d.metrics,
				RequestBackup: d.requestBackup,
				BackupRequest: d.backupRequest,
				BackupStored:  d.backupStored,
				Destination:   d.destination,
				Healthy:       d.healthy,
				Logger:        o.Logger,
			})
		})
	}
	err := g.Wait()
	// A last state file, so it does not claim the sites still run.
	if serr := d.writeState(); serr != nil {
		d.log.Warn().Err(serr).Msg("cannot write the last state file")
	}
	return err
}

// running is one started supervisor.
type running struct {
	sup    *supervisor
	cancel context.CancelCauseFunc
	done   chan struct{}
	err    error
}

// runSites starts a supervisor per active site and restarts them as
// reloads say, until ctx ends or no active site is left running.
//
// A site whose run ends with an error stops alone: the others run on
// undisturbed (before, the daemon exited, and a service manager's
// restart cut every other site's replication connection and abandoned
// its basebackup in progress, again at each restart). It is kept in the
// status with its error, raises site_stopped_error, sets
// hoard_site_failed and turns /healthz unhealthy, and is started again
// after siteRetryMin, doubling up to siteRetryMax, or at once by a
// reload. A new run does what a start of the daemon did for the site:
// what the failed run stored is not stored again (the WAL a receiver
// stores before it gives up is stored under names that never take other
// bytes, and a stored copy holding more of that WAL is never replaced).
// When the error leaves no active site running, runSites returns it (a
// daemon of one site exits 1 as before), the site's site_stopped_error
// raised (siteFailed).
func (d *daemon) runSites(ctx context.Context, sites []Site) error {
	exited := make(chan *running)
	stopped := make(chan struct{})
	defer close(stopped)
	cur := map[string]*running{}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	// arm sets retry to the next restart of a site stopped by an error.
	arm := func() {
		retry.Stop()
		if next := d.nextRestart(); !next.IsZero() {
			retry.Reset(max(time.Until(next), 0))
		}
	}

	// start starts a site's supervisor; end is the stream end's copy
	// the site's stopped run left unstored (a restart in place).
	start := func(s Site, end walstream.StreamEnd) {
		sup := newSupervisor(d, s)
		sup.streamEnd = end
		d.mu.Lock()
		d.sups[s.Name] = sup
		d.mu.Unlock()
		if !s.Active {
			d.log.Info().Str(logSite, s.Name).Msg("site is inactive (active: false): no wal, no basebackups, no deletions")
			return
		}
		if streamsWAL(s) {
			// Its segment in progress changes from now on.
			d.mu.Lock()
			delete(d.leftSpools, filepath.Clean(s.SpoolDir))
			d.mu.Unlock()
		}
		sctx, cancel := context.WithCancelCause(ctx)
		r := &running{sup: sup, cancel: cancel, done: make(chan struct{})}
		cur[s.Name] = r
		siteRunningMetric(d.metrics, s.Name).Set(1)
		d.mu.Lock()
		_, failed := d.failed[s.Name]
		d.mu.Unlock()
		if !failed {
			siteFailedMetric(d.metrics, s.Name).Set(0)
		}
		go func() {
			r.err = sup.run(sctx)
			close(r.done)
			select {
			case exited <- r:
			case <-stopped:
			}
		}()
	}
	// stop stops a site's supervisor; forget also drops it from the
	// status (a reload), while a shutdown keeps it for the last state.
	// cause is nil, or walstream.ErrRestartInPlace for a restart that
	// stores the spool where the stopped site would have. It returns the
	// stream end's copy the site's receiver left unstored, and whether it
	// left any WAL in its spool unstored.
	stop := func(name string, forget bool, cause error) (walstream.StreamEnd, bool) {
		r := cur[name]
		delete(cur, name)
		if forget {
			d.mu.Lock()
			delete(d.sups, name)
			delete(d.down, name)
			delete(d.failed, name)
			d.mu.Unlock()
			// A restarted site raises its alerts again if they still hold.
			d.forgetAlerts(name)
		}
		if r == nil {
			return walstream.StreamEnd{}, false
		}
		r.cancel(cause)
		<-r.done
		siteRunningMetric(d.metrics, name).Set(0)
		if r.err != nil {
			d.log.Error().Err(r.err).Str(logSite, name).Msg("site stopped with an error")
		}
		return r.sup.pendingStreamEnd(), r.sup.unstoredWAL()
	}
	stopAll := func() {
		for name := range cur {
			stop(name, false, nil)
		}
	}
	defer stopAll()

	d.setSites(sites)
	for _, s := range sites {
		start(s, walstream.StreamEnd{})
	}
	d.checkOrphanSpools()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-exited:
			name := r.sup.site.Name
			if cur[name] != r {
				continue // stopped on purpose by a reload
			}
			if r.err == nil && ctx.Err() != nil {
				return nil
			}
			if r.err == nil {
				r.err = fmt.Errorf("stopped unexpectedly")
			}
			delete(cur, name)
			siteRunningMetric(d.metrics, name).Set(0)
			if len(cur) == 0 || ctx.Err() != nil {
				// No active site is left running (a daemon of one
				// site, or all of them stopped): the daemon exits 1
				// with the error, as it did before sites stopped
				// alone. The last state file shows the site stopped,
				// and its alert file stays: it says why the daemon
				// died to an operator who watches alert files.
				d.siteFailed(r.sup, r.err, false)
				return fmt.Errorf("site %s: %w", name, r.err)
			}
			d.siteFailed(r.sup, r.err, true)
			arm()
		case <-retry.C:
			d.restartDue(start)
			arm()
		case next := <-d.opts.Reload:
			if err := checkSites(next); err != nil {
				d.log.Error().Err(err).Msg("reload refused; keeping the running configuration")
				continue
			}
			d.reload(next, start, stop)
			d.checkOrphanSpools()
			arm()
		}
	}
}

// reload applies a new list of sites: removed and changed sites are
// stopped, changed and new ones started, the others left alone. A site
// whose stop leaves WAL in its spool unstored (the storage failed for
// the whole DrainTimeout), and that the reload removes, changes so that
// it no longer streams from that spool (keepsSpool), or gives another
// Destination, is started again with its previous settings: the server
// was told that WAL is flushed and may have recycled it, so nothing else
// would ever store it where it belongs (the archive whose backups need
// it). A later reload, once the storage takes uploads, applies the
// change.
func (d *daemon) reload(next []Site, start func(Site, walstream.StreamEnd), stop func(string, bool, error) (walstream.StreamEnd, bool)) {
	old := map[string]Site{}
	d.mu.Lock()
	for _, s := range d.sites {
		old[s.Name] = s
	}
	d.mu.Unlock()
	want := map[string]bool{}
	applied := make([]Site, 0, len(next))
	for _, s := range next {
		want[s.Name] = true
		prev, ok := old[s.Name]
		switch {
		case !ok:
			d.log.Info().Str(logSite, s.Name).Msg("reload: new site")
			start(s, walstream.StreamEnd{})
		case prev.Fingerprint != s.Fingerprint || prev.Active != s.Active:
			var end walstream.StreamEnd
			if inPlace(prev, s) {
				d.log.Info().Str(logSite, s.Name).Msg("reload: site configuration changed; restarting it (same storage destination: the spool is stored after the restart)")
				// The new run stores the stream end's copy the
				// stopped one aborted, connected or not.
				end, _ = stop(s.Name, true, walstream.ErrRestartInPlace)
			} else {
				d.log.Info().Str(logSite, s.Name).Msg("reload: site configuration changed; restarting it (after storing its wal where it went)")
				// Before stop forgets the failure of a stopped site.
				files := d.stoppedUnstored(prev)
				ran := d.receiverRan(s.Name)
				var unstored bool
				end, unstored = stop(s.Name, true, nil)
				if len(files) > 0 {
					unstored = true
					d.log.Error().Str(logSite, s.Name).Str("spool", prev.SpoolDir).Strs("files", files).
						Msg("reload: site is stopped by an error, and its spool holds wal that no run stored")
				}
				switch {
				case !unstored:
					end = walstream.StreamEnd{}
					if ran && !keepsSpool(prev, s) {
						d.spoolLeft(prev)
					}
				case !keepsSpool(prev, s):
					d.log.Error().Str(logSite, s.Name).Msg("reload: site changed so that it no longer stores its spool, but its wal is not stored (the storage failed for graceful_shutdown_upload_timeout); it keeps running with its previous settings: reload again once its storage takes uploads")
					s = prev
				default:
					// Not in place, same spool: another Destination. The
					// new run would store the old run's WAL in the new
					// one, a hole in the old archive that no run fills.
					d.log.Error().Str(logSite, s.Name).Str("destination", prev.Destination).Str("new_destination", s.Destination).
						Msg("reload: site's destination changed, but its wal is not stored (the storage failed for graceful_shutdown_upload_timeout); the new object_storage, prefix or path_prefix would get the wal the old archive's backups need: it keeps running with its previous settings: reload again once its storage takes uploads")
					s = prev
				}
			}
			forgetSiteMetrics(d.metrics, prev, s)
			start(s, end)
		case d.waitingRestart(s.Name):
			// The operator may have fixed what stopped it (moved the
			// spool's files away, stopped the other daemon): a reload
			// starts it at once, as a fresh start would.
			d.log.Info().Str(logSite, s.Name).Msg("reload: starting again a site stopped by an error")
			stop(s.Name, true, nil)
			start(s, walstream.StreamEnd{})
		}
		applied = append(applied, s)
	}
	for _, name := range slices.Sorted(maps.Keys(old)) {
		if want[name] {
			continue
		}
		d.log.Info().Str(logSite, name).Msg("reload: site removed; stopping it")
		// Before stop forgets the failure of a stopped site.
		files := d.stoppedUnstored(old[name])
		ran := d.receiverRan(name)
		end, unstored := stop(name, true, nil)
		if len(files) > 0 {
			d.log.Error().Str(logSite, name).Str("spool", old[name].SpoolDir).Strs("files", files).
				Str("hint", fmt.Sprintf("fix what stopped the site (its error in /status) and its restart stores them; or, with the configuration that has the site, store each complete segment and .history file with hoard wal-push --config FILE --site %s %s/<file> and move the spool's files away; then reload again", name, old[name].SpoolDir)).
				Msg("reload: site removed while it is stopped by an error, but its spool holds wal that no run stored (the server was told it is flushed and may have recycled it); the site is kept with its previous settings and started again: reload again once its wal is stored")
			start(old[name], end)
			applied = append(applied, old[name])
			continue
		}
		if !unstored {
			// Its series would otherwise be exported with their last
			// values for good: hoard_wal_connected, hoard_site_running
			// 0 (HoardSiteDown), its newest basebackup ageing
			// (HoardBackupTooOld).
			d.metrics.RemoveLabeled("site", name)
			d.mu.Lock()
			delete(d.formerSlots, name)
			d.mu.Unlock()
			if ran {
				d.spoolLeft(old[name])
			}
			continue
		}
		d.log.Error().Str(logSite, name).Msg("reload: site removed, but its wal is not stored (the storage failed for graceful_shutdown_upload_timeout); it keeps running with its previous settings: reload again once its storage takes uploads")
		start(old[name], end)
		applied = append(applied, old[name])
	}
	d.setSites(applied)
	d.log.Info().Int("sites", len(applied)).Msg("configuration reloaded")
}

// receiverRan tells whether site runs (not stopped by an error and
// waiting for its restart) and its run built its WAL receiver, whose
// stop stores the spool's segment in progress (spoolLeft).
func (d *daemon) receiverRan(site string) bool {
	sup := d.supervisors()[site]
	return sup != nil && !d.waitingRestart(site) && sup.ranReceiver()
}

// spoolLeft records that a reload let the spool of site go, the site
// stopped while it ran with all its WAL stored: the stop stored the
// segment in progress it leaves in the spool (leftSpools). A site that
// was stopped by an error has no stop that stored it.
func (d *daemon) spoolLeft(site Site) {
	if !streamsWAL(site) {
		return
	}
	d.mu.Lock()
	d.leftSpools[filepath.Clean(site.SpoolDir)] = true
	d.mu.Unlock()
}

// stoppedUnstored returns the files in the spool of site that no run
// stored, when the site is stopped by an error and waits for its restart
// (a running site's stop drains it instead): complete segments, .history
// files and the .partial files a run stores whole
// (walstream.SpoolUnstored), and the copy of the segment in progress:
// the one its failed run did not store, or, when no receiver of it ran
// in this process (the site failed before, its storage did not open),
// the one an earlier process left holding WAL (walstream's leftover),
// which nothing here is known to have stored. A spool that cannot be
// read is named instead of its files: what it holds is not known to be
// stored. Nil when there is nothing, or the site does not stream.
func (d *daemon) stoppedUnstored(site Site) []string {
	d.mu.Lock()
	f := d.failed[site.Name]
	d.mu.Unlock()
	if f == nil || f.retryAt.IsZero() || !streamsWAL(f.sup.site) {
		return nil
	}
	dir := f.sup.site.SpoolDir
	files, leftover, err := walstream.SpoolUnstored(dir, func(err error) {
		d.log.Warn().Err(err).Str(logSite, site.Name).Msg("cannot read the marker of the spool's stored segment in progress; its .partial counts as unstored")
	})
	if err != nil {
		return []string{fmt.Sprintf("%s (cannot read it: %v)", dir, err)}
	}
	switch {
	case f.sup.ranReceiver():
		if f.sup.unstoredWAL() {
			if n := f.sup.pendingStreamEnd().Name; n != "" {
				files = append(files, n)
			}
		}
	case leftover != "":
		files = append(files, leftover)
	}
	return files
}

// keepsSpool tells whether next, started after prev stopped, stores
// what prev left in its spool: it streams from the same spool.
func keepsSpool(prev, next Site) bool {
	return prev.SpoolDir != "" && next.Active && next.WAL == WALStream && next.SpoolDir == prev.SpoolDir
}

// inPlace tells whether a site restarted from prev to next stores its
// WAL where it did, from the same spool: then the next run stores what
// the stopped one left in the spool, and the stop need not wait for its
// uploads. A site that stops streaming (inactive, another
// active_backup_mode), moves its spool (backup_location) or whose
// Destination is unknown drains.
func inPlace(prev, next Site) bool {
	return prev.Active && next.Active && prev.WAL == WALStream && next.WAL == WALStream &&
		prev.SpoolDir == next.SpoolDir && prev.Destination != "" && prev.Destination == next.Destination
}

// siteFailed records that sup's run ended with err (siteFailure), raises
// site_stopped_error and logs the error. With restart, the other sites
// run on: the log says when the site is started again. Without, the
// daemon is about to exit with err: the status and metric record it for
// the last state file, and the alert file stays after the exit (an
// operator who watches alert files sees why the daemon died), until a
// later run clears it (monitor).
func (d *daemon) siteFailed(sup *supervisor, err error, restart bool) {
	name := sup.site.Name
	now := time.Now()
	d.mu.Lock()
	f := &siteFailure{sup: sup, err: err, at: now, n: 1}
	if prev := d.failed[name]; prev != nil {
		f.n = prev.n + 1
	}
	delay := siteRetryMin
	for i := 1; i < f.n && delay < siteRetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, siteRetryMax)
	if restart {
		f.retryAt = now.Add(delay)
	}
	d.failed[name] = f
	d.mu.Unlock()
	siteFailedMetric(d.metrics, name).Set(1)
	sup.setError(err)
	d.setAlert(AlertSiteStopped, name, true)
	if !restart {
		d.log.Error().Err(err).Str(logSite, name).
			Msg("site stopped with an error and no active site is left running: the daemon exits 1 with it; the site_stopped_error alert file stays until a later run of the daemon has had no site stopped for a minute")
		return
	}
	d.log.Error().Err(err).Str(logSite, name).Int("failures_in_a_row", f.n).Time("restart_at", f.retryAt).
		Msg("site stopped with an error: its wal receiver and backups are stopped, the other sites run on; it is started again at restart_at, or at once on SIGHUP (systemctl reload hoard)")
}

// formerSlot records f, the receiver's Status.FormerSlot, for site and
// returns the newest one noted since the daemon started: nil when none.
// The receiver's own is lost when it restarts (a reload, a restart after
// an error), while the former primary keeps the slot and its WAL until
// someone drops it there: the daemon cannot see that server, so /status
// and hoard_wal_former_slot keep it until the daemon restarts (the log
// keeps the warning) or a reload removes the site.
func (d *daemon) formerSlot(site string, f *walstream.FormerSlot) *walstream.FormerSlot {
	d.mu.Lock()
	defer d.mu.Unlock()
	if prev := d.formerSlots[site]; f == nil || prev != nil && !f.At.After(prev.At) {
		return prev
	}
	d.formerSlots[site] = f
	return f
}

// nextRestart returns when the next site stopped by an error is due to
// start again; zero when none is waiting.
func (d *daemon) nextRestart() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var next time.Time
	for _, f := range d.failed {
		if !f.retryAt.IsZero() && (next.IsZero() || f.retryAt.Before(next)) {
			next = f.retryAt
		}
	}
	return next
}

// waitingRestart tells whether site is stopped by an error and waits
// for its restart.
func (d *daemon) waitingRestart(site string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.failed[site]
	return f != nil && !f.retryAt.IsZero()
}

// restartDue starts again the sites stopped by an error whose restart is
// due, with their current configuration.
func (d *daemon) restartDue(start func(Site, walstream.StreamEnd)) {
	now := time.Now()
	d.mu.Lock()
	var due []Site
	for _, s := range d.sites {
		if f := d.failed[s.Name]; f != nil && !f.retryAt.IsZero() && !now.Before(f.retryAt) {
			f.retryAt = time.Time{}
			due = append(due, s)
		}
	}
	d.mu.Unlock()
	for _, s := range due {
		d.log.Info().Str(logSite, s.Name).Msg("starting again a site stopped by an error")
		start(s, walstream.StreamEnd{})
	}
}

// checkRestarted ends the failure of site once its restarted run sup
// has run for siteProvenAfter and, when it streams, is connected: the
// alert file goes (unless another site holds it), hoard_site_failed is
// 0 and the status and /healthz forget the error.
func (d *daemon) checkRestarted(site string, sup *supervisor, now time.Time) {
	d.mu.Lock()
	f := d.failed[site]
	waiting := f != nil && !f.retryAt.IsZero()
	d.mu.Unlock()
	if f == nil || f.sup == sup || waiting || now.Sub(sup.started) < siteProvenAfter {
		return
	}
	st := sup.status()
	if !st.Running || streamsWAL(sup.site) && (st.WAL == nil || !st.WAL.Connected) {
		return
	}
	d.mu.Lock()
	if d.failed[site] != f {
		// It failed again meanwhile.
		d.mu.Unlock()
		return
	}
	delete(d.failed, site)
	d.mu.Unlock()
	siteFailedMetric(d.metrics, site).Set(0)
	d.setAlert(AlertSiteStopped, site, false)
	d.log.Info().Str(logSite, site).Int("failures_in_a_row", f.n).Msg("site running again after it stopped with an error")
}

func (d *daemon) setSites(sites []Site) {
	s := append([]Site(nil), sites...)
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	d.mu.Lock()
	d.sites = s
	d.mu.Unlock()
}

// supervisors returns the current supervisors by name.
func (d *daemon) supervisors() map[string]*supervisor {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]*supervisor, len(d.sups))
	for k, v := range d.sups {
		out[k] = v
	}
	return out
}

// requestBackup asks the site's supervisor for a basebackup. While the
// maintenance mode file exists the request is refused (ErrMaintenance)
// rather than kept for later. It returns the request's id
// (backupRequest).
func (d *daemon) requestBackup(site string) (string, error) {
	sup := d.supervisors()[site]
	if sup == nil {
		return "", fmt.Errorf("site %q: %w", site, ErrUnknownSite)
	}
	if !sup.site.Active {
		return "", fmt.Errorf("site %s is inactive (active: false): %w", site, ErrUnknownSite)
	}
	if d.waitingRestart(site) {
		return "", fmt.Errorf("site %s: %w", site, ErrSiteStopped)
	}
	if sup.maintenance() {
		return "", fmt.Errorf("site %s: %w (remove %s to end it)", site, ErrMaintenance, d.opts.MaintenanceFile)
	}
	return sup.request()
}

// destination returns the Destination of site, "" when it runs no such
// site.
func (d *daemon) destination(site string) string {
	if sup := d.supervisors()[site]; sup != nil {
		return sup.site.Destination
	}
	return ""
}

// backupRequest returns what became of basebackup request id of site:
// ErrUnknownRequest when the daemon does not know it.
func (d *daemon) backupRequest(site, id string) (RequestStatus, error) {
	r, ok := d.reqs.get(site, id)
	if !ok {
		return RequestStatus{}, fmt.Errorf("site %s, request %s: %w", site, id, ErrUnknownRequest)
	}
	return r, nil
}

// backupStored has the backup loop of site list the backups now: a
// backup was stored there (POST /<site>/backup-stored). In maintenance
// mode the loop lists nothing: ErrMaintenance says so.
func (d *daemon) backupStored(site string) error {
	sup := d.supervisors()[site]
	if sup == nil || !sup.site.Active {
		return fmt.Errorf("site %q: %w", site, ErrUnknownSite)
	}
	if sup.maintenance() {
		return fmt.Errorf("site %s: %w: it lists the backups once %s is removed", site, ErrMaintenance, d.opts.MaintenanceFile)
	}
	sup.listSoon()
	return nil
}

// status returns the whole daemon's status.
func (d *daemon) status() Status {
	st := Status{Version: d.opts.Version, StartedAt: d.started.UTC(), Time: time.Now().UTC(), Sites: map[string]SiteStatus{}, Alerts: []string{}}
	if d.alerts != nil {
		st.Alerts = d.alerts.Active()
	}
	d.mu.Lock()
	st.OrphanSpools = slices.Clone(d.orphans)
	d.mu.Unlock()
	now := time.Now()
	for name, sup := range d.supervisors() {
		// The receiver's figures move with every message: read them now
		// rather than show the monitor's last refresh.
		sup.refresh(now)
		ss := sup.status()
		d.mu.Lock()
		if f := d.failed[name]; f != nil {
			ss.Stopped = &SiteStopped{Error: f.err.Error(), At: f.at.UTC(), Failures: f.n, NextRestart: timePtr(f.retryAt)}
		}
		d.mu.Unlock()
		st.Sites[name] = ss
	}
	return st
}

// healthy reports an error when a site is stopped by an error (until a
// restarted run has proved itself), a streaming site has been
// disconnected for more than unhealthyAfter, or an active site's
// supervisor is not running.
func (d *daemon) healthy() error {
	now := time.Now()
	var (
		failedSite string
		f          siteFailure
	)
	d.mu.Lock()
	if names := slices.Sorted(maps.Keys(d.failed)); len(names) > 0 {
		failedSite, f = names[0], *d.failed[names[0]]
	}
	d.mu.Unlock()
	if failedSite != "" {
		next := "a restart of it runs"
		if !f.retryAt.IsZero() {
			next = "started again at " + f.retryAt.UTC().Format(time.RFC3339) + " or on SIGHUP"
		}
		// The first line: the hint that follows is in /status.
		msg, _, _ := strings.Cut(f.err.Error(), "\n")
		return fmt.Errorf("site %s stopped with an error at %s (%d in a row; %s): %s: %w",
			failedSite, f.at.UTC().Format(time.RFC3339), f.n, next, msg, errUnhealthy)
	}
	for name, sup := range d.supervisors() {
		st := sup.status()
		if !st.Active {
			continue
		}
		if !st.Running {
			return fmt.Errorf("site %s is not running: %w", name, errUnhealthy)
		}
		d.mu.Lock()
		since, down := d.down[name]
		d.mu.Unlock()
		if down && now.Sub(since) > unhealthyAfter {
			return fmt.Errorf("site %s: wal receiver disconnected since %s: %w", name, since.UTC().Format(time.RFC3339), errUnhealthy)
		}
	}
	return nil
}

// monitor refreshes the sites' WAL status and metrics, writes the state
// file and flushes StatsD every StateInterval until ctx ends.
func (d *daemon) monitor(ctx context.Context, sd *metrics.StatsD) {
	t := time.NewTicker(d.opts.StateInterval)
	defer t.Stop()
	stateFailed := false
	staleCleared := false
	for {
		now := time.Now()
		if !staleCleared && now.Sub(d.started) >= siteProvenAfter {
			// A site_stopped_error file an earlier run left (a daemon
			// that exited because its last site stopped, or killed
			// while a site was stopped) goes once this run has run
			// for siteProvenAfter, unless a site of it holds it. Not
			// at the start: in a service manager's restart loop the
			// file would go at every start and come back seconds later.
			staleCleared = true
			d.setAlert(AlertSiteStopped, "", false)
		}
		for name, sup := range d.supervisors() {
			sup.refresh(now)
			d.checkRestarted(name, sup, now)
			if sup.site.WAL != WALStream || !sup.site.Active {
				continue
			}
			st := sup.status()
			d.mu.Lock()
			if st.WAL != nil && st.WAL.Connected {
				delete(d.down, name)
			} else if _, ok := d.down[name]; !ok {
				d.down[name] = now
			}
			d.mu.Unlock()
		}
		if err := d.writeState(); err != nil && !stateFailed {
			// Logged once: the daemon works without its state file.
			stateFailed = true
			d.log.Warn().Err(err).Msg("cannot write the state file; going on without it")
		} else if err == nil && stateFailed {
			stateFailed = false
			d.log.Info().Str("file", d.opts.StateFile).Msg("state file written again")
		}
		if sd != nil {
			if err := sd.Flush(d.metrics); err != nil {
				d.log.Debug().Err(err).Msg("statsd flush")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writeState writes the state file, when there is one.
func (d *daemon) writeState() error {
	if d.opts.StateFile == "" {
		return nil
	}
	return writeStateFile(d.opts.StateFile, d.status())
}

// setAlert records whether site's condition for the alert name holds,
// and raises or clears the alert file: it exists while any site holds it.
// Clearing an alert no site holds removes the file too (one left by an
// earlier run, whose condition has ended). A failure to write the file is
// logged: alerts must not stop backups.
func (d *daemon) setAlert(name, site string, on bool) {
	d.mu.Lock()
	holders := d.raisedBy[name]
	if on {
		if holders == nil {
			holders = map[string]bool{}
			d.raisedBy[name] = holders
		}
		holders[site] = true
	} else {
		delete(holders, site)
	}
	n := len(holders)
	d.mu.Unlock()
	if d.alerts == nil {
		return
	}
	var err error
	switch {
	case on:
		err = d.alerts.Raise(name)
	case n == 0:
		err = d.alerts.Clear(name)
	}
	if err != nil {
		d.log.Warn().Err(err).Str("alert", name).Msg("alert file")
	}
}

// forgetAlerts drops a stopped site from every alert, clearing those it
// alone held.
func (d *daemon) forgetAlerts(site string) {
	d.mu.Lock()
	var names []string
	for name, holders := range d.raisedBy {
		if holders[site] {
			names = append(names, name)
		}
	}
	d.mu.Unlock()
	for _, name := range names {
		d.setAlert(name, site, false)
	}
}
