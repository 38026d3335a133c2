// Package storetest runs real object-storage servers for tests and holds the
// conformance suite that every storage.Store must pass.
//
// MinIO, Azurite and FakeGCS each start their server on free loopback ports
// (binaries under $HOARD_CACHE, default /var/cache/hoard, installed by
// scripts/deps.sh), wait until it answers, create a bucket, and stop the
// server in t.Cleanup. A port that another process binds before the
// server does moves the server to new ports (testio.StartServer); so do
// Swift and SFTP. They return the storage.Config that reaches it. A
// missing binary skips the test, or fails it under HOARD_TEST_STRICT=1;
// -short skips them all. Each call starts its own server, so tests never
// share state.
//
// Run is the conformance suite: it takes a function that returns an empty
// store per subtest (Open gives each one its own prefix of a shared bucket).
package storetest
