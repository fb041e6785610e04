// Package deadletter owns the dead-letter topic: the dead-letter record and its
// lakesink.* headers (Record, the Header constants, Reason), replay back to the
// source topics exactly once through Kafka transactions with a ledger in the
// replay group's commit metadata (Replay), and counts by table and reason (Stats).
// It decodes with package decode, as the sink does, without an engine.
package deadletter
