// Package wmsqlite is a SQLite dialect for watermill-sql: a SchemaAdapter and
// an OffsetsAdapter for modernc.org/sqlite, and a BackoffManager that wakes a
// subscriber as soon as something is published instead of polling.
//
// The adapters rely on SQLite having a single writer. Every subscriber
// transaction must be BEGIN IMMEDIATE (the DSN from sqldb.SQLiteDSN sets
// _txlock=immediate): a subscriber then holds the database's write lock from
// the moment it reads its consumer group's offset until it commits the ack, so
// two subscribers of one group never read the same offset, and because
// AUTOINCREMENT row ids are handed out under that same lock and never reused,
// row id order is commit order and a plain "offset greater than the last
// acked one" cursor never skips a row. With deferred transactions both
// guarantees are lost.
//
// Use an unbounded connection pool (database/sql's default). Subscribers hold
// a connection while their message waits on its channel; with a small pool a
// publisher can wait for a connection that only the acking code would free.
package wmsqlite
