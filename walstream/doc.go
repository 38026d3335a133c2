// Package walstream is hoard's WAL receiver, the heart of hoard daemon: it
// streams WAL from a server over a physical replication connection into
// fsynced segment files in a local spool directory, and hands each
// complete segment to an Uploader that archives it.
//
// It does what PostgreSQL's pg_receivewal does, without running it, and
// keeps its on-disk conventions, so the two can be compared file by file.
//
// # Stream
//
// Run connects (IDENTIFY_SYSTEM, SHOW wal_segment_size: segments are not
// always 16 MiB), makes sure the physical replication slot exists
// (CREATE_REPLICATION_SLOT ... PHYSICAL RESERVE_WAL, so the server keeps
// WAL from that moment), decides where to resume and sends
// START_REPLICATION SLOT s PHYSICAL X/Y TIMELINE t. XLogData is written at
// its offset in the segment that holds it; WAL must arrive contiguous, and
// a message that does not start where the last one ended ends the session.
// Server keepalives that ask for a reply get a standby status update at
// once; otherwise one is sent every StatusInterval, or at half the
// server's wal_sender_timeout when that is shorter: a paused receiver
// reads no keepalive, and the server ends a connection it heard nothing
// from for that long.
//
// A connection on which nothing comes from the server for ReceiveTimeout
// (a minute, PostgreSQL's wal_receiver_timeout) ends the session, though
// no error ended it: a network path that drops every packet, or a frozen
// server, would otherwise leave the Receiver waiting, Connected, while
// the server writes WAL it never gets. Half way it asks for a keepalive
// (a status update with the reply bit), which an idle server answers at
// once, so a quiet server is no stalled one. A status update that the
// server does not read within ReceiveTimeout ends the session too.
//
// Connection and stream errors, local write errors included, end the
// session; Run reconnects with backoff and resumes from the spool. Only
// errors that reconnecting cannot fix stop Run: the server is not the one
// the spool came from (segment size, timeline history, a system
// identifier whose WAL lies before the spool's), or it no longer has the
// WAL the spool needs (ErrWALRemoved). Status.LastError shows an error
// only while it holds: a connection or stream error until the server
// accepts START_REPLICATION again, an upload error until an upload
// succeeds; the log has every one.
//
// Physical slots are not replicated: after a failover or switchover that
// moves the address to the promoted server, the slot is missing there and
// is created, while the former primary may keep the old one, and its WAL,
// without bound. The Receiver cannot reach that server; when it creates
// the slot after streaming through it before (this Run, or WAL in the
// spool), it logs a warning with what to do and sets Status.FormerSlot
// (formerslot.go).
//
// A server of another database system whose WAL lies beyond the spool's
// is the node's cluster replaced in place, as pg_upgrade does
// (changeSystem): the old system's WAL is stored first, its unfinished
// last segment as a .partial, and only then is the new system streamed,
// from its slot, created again.
//
// # Spool
//
// The spool directory holds:
//
//	<segment>.partial   the segment being received, preallocated to the
//	                    segment size (fallocate, or zeros), as pg_receivewal
//	                    does; also the last segment of an ended timeline,
//	                    until uploaded
//	<segment>           complete segments waiting for upload
//	<tli>.history       timeline history files waiting for upload
//	partial-upload/     the copy of the growing .partial last uploaded,
//	                    which the next copy extends; removed at start
//	.hoard-stored-partial  the marker of the last stream end's copy of a
//	                    .partial stored: its name, length and CRC-32C
//	                    (StoredMarkerName, storedmarker.go); never removed,
//	                    trusted only while the file's bytes match it
//	*.tmp               temporary files, removed at start
//
// When a segment fills, it is fsynced, renamed to its final name and the
// directory is fsynced; only then is its end reported as flushed, and
// only then is the next segment's .partial created. At every instant a
// finished segment is either complete under its final name or the flush
// position the server heard lies before its end, so a crash between any
// two steps loses nothing: the server still has whatever the spool may
// lack. A crash after the uploader deleted the last complete segment and
// before the next .partial exists leaves an empty spool, and the slot
// says where to resume.
//
// # Resume
//
// Streaming always starts at a segment boundary, as pg_receivewal's does:
// a segment is received whole, and bytes already in a .partial are
// received again and written at the same offsets. The start is the latest
// .partial in the spool, or the segment after the latest complete one;
// with an empty spool, the start of the segment holding the slot's
// restart_lsn (the flush position last reported); without that, the
// server's current position. A full segment left as .partial below that
// start on the same timeline (earlier hoard versions left one when they
// died between creating the next segment and renaming the finished one)
// is never uploaded as a .partial: streaming resumes at its start when
// the slot shows the server still has it; otherwise it is renamed
// complete if it is a whole segment of valid WAL records (up to an
// XLOG_SWITCH, after which PostgreSQL leaves zeros, or to its end), and
// streamed again if not. When the spool is on an older timeline than the
// server, the server's timeline history (TIMELINE_HISTORY) says where
// that timeline ended: before the end, streaming resumes on the old
// timeline and the server switches over as usual; at or past it, on the
// next timeline from the start of the segment holding the switch point.
//
// # Timelines
//
// At the end of a timeline the server leaves COPY mode and names the next
// timeline and its switch point. Like the walreceiver and pg_receivewal,
// the Receiver keeps the old timeline's last segment as <segment>.partial
// (it is not a complete segment: it holds WAL only up to the switch point)
// and queues it for upload under that name, fetches and queues the new
// timeline's history file, then streams the new timeline from the start of
// the segment that holds the switch point: the server's copy of that
// segment on the new timeline begins with the old timeline's WAL.
// An ended timeline's .partial that a run left in the spool is queued at
// the next start with the complete files, in segment order, whether or
// not a server answers (queueSpool): a file of a later timeline in the
// spool (a segment, a .partial or a .history) shows that it is final.
//
// # Durability
//
// The standby status update reports as written what was received, and as
// flushed (and applied: nothing is replayed) only what was fsynced. The
// partial segment is fsynced in batches, before each status update, and a
// segment is fsynced before it is renamed complete; WAL is never
// acknowledged before it is on disk. With a slot, the server keeps every
// segment from the one holding the reported flush position, so WAL the
// Receiver lost in a crash (the unflushed tail of the .partial) is still
// on the server, and the next run fetches it again. A crash can therefore
// lose nothing that was reported flushed: it is in the spool or archived.
//
// Nor, if the server is then lost for good, does the WAL of the segment
// in progress stay only in the spool. A run killed without its stop path
// (kill -9, the OOM killer, a reboot) stores no copy of it, and the
// server may have recycled it. The next Run notes the spool's newest
// .partial holding WAL at its start (an older version's crash left an
// empty one after it); when a session ends before any WAL arrived (the
// server cannot be reached, at the first attempt and at each retry), it
// stores that file as the stream end's copy, up to the end of its last
// valid record (CRC, xl_prev and each page's own address checked, as
// recovery reads WAL: leftover.go), never replacing a stored copy that
// holds more of it. Full segments an older version left as .partial
// below it on its timeline (its rename failed and it went on) are
// renamed complete and stored first, when each is a whole segment of
// valid records (up to an XLOG_SWITCH, or to its end): without them the
// copy would lie behind a hole. A session that streams rewrites the segment and
// stores it itself, as always, and its stream end's copy is never shorter
// than the WAL the file held before it: a server back only briefly may
// die again before the session received the segment as far as the dead
// run had, and the bytes past the session's end are still that run's,
// the same WAL (the same segment name is the same timeline; the server
// sends only WAL it flushed). So the copy runs to the longer of the two
// (spoolWAL), and so does a session's after an earlier session of the
// same Run fsynced more of the segment.
//
// A server that answers but can never stream that segment again makes
// the spool's file its only copy too: the slot was dropped and created
// again, or invalidated by max_slot_wal_keep_size, while no run held it,
// and the server recycled the WAL (ErrWALRemoved); or the server was
// restored to an earlier point, and the spool's timeline is not on its
// history (ErrOtherHistory: WAL of a history the server left, kept as a
// .partial like an ended timeline's). Each next start ends with the same
// fatal error, so the leftover, and the copy of a segment a session of
// this Run fsynced, are stored the same way before Run returns the error
// (within DrainTimeout), logged at Error with why streaming cannot
// resume. Other fatal errors store none of it (keepsSpoolWAL): a spool
// that cannot be written or read, another server (the segment size
// changed), or another system (changeSystem stores the old system's WAL
// itself first, and nothing of the new one).
//
// An fsync or write error is final for the file: Linux reports a failed
// writeback once, and a second fsync succeeds whether or not the bytes
// reached the disk. The session ends without reporting anything past what
// was fsynced before the error, nor storing the segment's unsynced part as
// a .partial, logs the loss at Error, and the next one streams the
// segment again from its start, rewriting every byte. Its stream end
// stores the part fsynced before the error as the .partial, as at any
// stream end (see Uploads): the server heard it is flushed, and a server
// that dies before the next session streams the segment again leaves the
// spool its only copy. A failed fsync of
// the directory after a rename renames the segment back to .partial, for
// the same reason (its stream end stores it, fsynced whole, as it stores
// any segment in progress: see Uploads), and a new segment file whose
// fsync or directory fsync failed is removed, to be created and fsynced
// again: left in place, the next open would take it as made durable (one
// that cannot be removed stops Run, also when the fsync's error is a full
// disk's ENOSPC, which otherwise pauses receiving). At start the spool
// directory is fsynced before its listing is trusted.
//
// # Uploads
//
// The receive loop never waits on storage. Complete segments, .history
// files and ended timelines' .partial files go to a queue drained in order
// by one uploader goroutine, which retries each file forever with backoff
// (logging a warning and recording the error in Status) and deletes it from
// the spool only after the Uploader returned nil. Files left in the spool
// are queued again at the next start. The one exception to the order is
// an ended timeline's .partial that the storage refuses for good: another
// copy is stored under its name that the Uploader may not replace, one
// that may hold more WAL and that it cannot read to check
// (archive.ErrUnverifiedPartial: a site whose daemon holds only the
// public key) or one of other WAL (archive.ErrWALConflict). Retried at the
// head of the queue, it would keep every file of the next timeline out of
// the archive, forever, while the slot makes the server keep its WAL. It
// leaves the head instead: logged at Error, naming the file and the
// stored object, its error held in Status until it is stored, it stays
// in the spool and is queued again after a backoff (1 s doubling to 30 s)
// and at the next start, while the files behind it are stored. Out of the
// queue between its tries, it still waits for upload: Status names it in
// RefusedPartials and counts it in QueuedSince from when it was first
// queued, Unstored and a stop's count of the files left in the spool
// count it, and a pg_upgrade in place (changeSystem), which stores the
// old system's WAL before it streams the new one, waits for it. A failing
// storage still holds the queue, so that files are stored in order. With PartialUploadInterval, the
// growing .partial is fsynced and a copy of its fsynced part (that part
// only, not padded to the segment size) is uploaded through
// Uploader.UploadPartial when it grew; the copy is kept after a successful
// upload and the next one appends only the bytes received since (made
// again whole after a failure or for another segment); a failure waits
// for the next interval. The Uploader hears the size of the copy it stored last, when
// that copy is known to be the stored one, so it need not ask the
// storage.
//
// Whatever PartialUploadInterval, a session that ends other than by a
// fatal error, or by one after which the spool's WAL is still worth
// storing (see Durability), Run's stop included (see Shutdown) (the server shut down, after sending its
// WAL through the shutdown checkpoint, the connection failed, or a write
// or fsync of the spool's file failed: its part fsynced before) queues
// the same copy of the segment it was receiving, before the next
// connection, when it grew since the last copy stored (streamend.go): a
// server that never comes back leaves its last commits stored, not only
// in the spool. A failed copy is queued again, with backoff, between
// connection attempts.
//
// With Synchronous, the copy is uploaded whenever the segment grew and no
// copy is on its way, and the flush position reported to the server is
// the stored one. Each upload that ends wakes the receive loop, which
// reports what is now stored and queues the next copy with everything
// fsynced meanwhile at once. Copies go one at a time: two PUTs of one
// object in flight may land in either order, and a shorter copy landing
// last would take back WAL already reported stored.
//
// # Disk guard
//
// A new segment file takes a whole segment of disk at once
// (preallocated). With MinFreeBytes, the guard is asked before each new
// segment file is created: when the spool's filesystem would have less
// than MinFreeBytes free after it, the segment is not created and
// receiving pauses at the segment boundary. It is also asked every
// DiskCheckInterval (1 s), which pauses receiving in the middle of a
// segment too. A full disk (ENOSPC while preallocating) pauses the same
// way, with or without MinFreeBytes; the new file is removed (one that
// cannot be removed stops Run: the next open would take it as made
// durable, see Durability). A copy-on-write file system (btrfs, XFS
// with reflinks) reserves no space for overwrites, so its full disk can
// also fail a write or fsync into a segment file already preallocated
// with ENOSPC: that session ends as after any failed write (Durability),
// and the next one pauses the same way before it writes into the
// segment, until a whole segment fits in the spool's free space. While
// paused, no new WAL is received or acknowledged: the slot keeps it on
// the server. Status updates go on, with the old flush position, so the
// server does not time the connection out. Receiving resumes once
// ResumeMultiplier (1.5) times MinFreeBytes are free (and the new
// segment fits), as uploads free the spool; this is
// looked at each time an upload removes a file from the spool, and every
// DiskCheckInterval (for room made some other way).
//
// # Hole check
//
// With Options.Archived, every resume hands where streaming resumes, and
// the complete segments then waiting in the spool, to a goroutine that
// lists the archive (retrying while the storage fails; the receive loop
// does not wait). The newest segment before that point, in the archive or
// the spool, must be the one just before it. Otherwise the segments
// between are a hole: WAL that was only in a lost spool, or that the slot
// moved past. It is logged at Error and kept in Status.Holes. A new
// archive, with no segment before that point, has no hole. An archived
// segment counts only if it may be the streamed system's (its first page,
// ArchiveLister.ForeignSegment); one whose first page cannot be read
// leaves the check undecided: logged at Error, naming it, with no hole
// recorded, and kept in Status.HoleCheckUndecided until a later check
// decides (hole.go).
//
// # Shutdown
//
// When ctx ends, Run stops receiving, fsyncs the partial segment, sends a
// last status update with the true flush position and closes the
// connection. The fsynced part of the segment in progress is stored as a
// .partial, as at a stream end (streamend.go), and Run returns only once
// that copy and the uploads queued before it are stored, or DrainTimeout
// passed: a reload that changes where the Uploader stores takes effect
// only after the WAL received under the old one is stored there. Without
// such a copy, the upload in progress gets DrainTimeout to finish. A ctx
// cancelled with the cause ErrRestartInPlace (a restart that stores into
// the same place) waits for none of it; PendingStreamEnd then gives the
// copy not stored, which the next Receiver stores (Options.StreamEnd),
// connected or not. The rest stays in the spool for the next run. A Run
// stopped before any session received WAL stores the .partial an earlier
// run left (see Durability) the same way.
package walstream
