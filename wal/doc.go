// Package wal is PostgreSQL's write-ahead log vocabulary, as hoard needs it
// to archive, stream, check and restore WAL without a server at hand: file
// names (segments, .partial, .history and .backup files), segment and LSN
// arithmetic for any segment size, the long page header that starts every
// segment and the checks that tie it to the file's name and size, and
// timeline history files.
//
// The definitions follow PostgreSQL's src/include/access/xlog_internal.h
// (file names, page headers) and src/backend/access/transam/timeline.c
// (history files). wal is a leaf: it imports no other hoard package, does
// no I/O beyond reading one local file's header (CheckSegmentFile) and a
// cluster's pg_control (ReadControlFile), and never logs.
package wal
