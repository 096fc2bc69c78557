// Package inproc holds the embedded, in-process implementations of Revenue Guard's
// root interfaces: the Inventory (one serialisation point per SKU, made durable by
// package journal, with hold expiry, snapshots and crash recovery), and the in-memory
// parts of sessions and rate limiting.
//
// The Inventory keeps every SKU and reservation in memory. Each SKU's mutex is its
// serialisation point; a change is appended to the journal under it and acknowledged
// only once fsynced, with many callers sharing one fsync. Recovery loads the newest
// snapshot and replays the journal after it.
package inproc
