// Package sink is the long-running consumer: it reads Kafka, buffers decoded records
// per (table, event-time period, partition), uploads them as raw Parquet files, and
// commits an offset only once everything below it is durable. It owns the engine,
// the offset book, the memory accounting, the upload workers, the consumer loop and
// the sink's metrics; decoding is package decode, the raw file's format package
// lake/rawfile, dead letters package deadletter.
//
// A record's way from fetch to committed offset:
//
//  1. Fetch (kafka.go, Sink.loop): the group member polls with isolation
//     read_committed; Engine.Prepare fetches the writer schema an Avro record names
//     without holding the engine's lock (an unreachable registry delays, never
//     dead-letters).
//  2. Decode and route (engine.go, Engine.Process): the topic's decode.Table stages
//     the record as one row and returns its event time, which picks the period. A
//     record the offset book already knows to be durable (commit metadata of an
//     earlier run) is skipped. A rejected record goes to the dead-letter topic
//     (deadletter.Record), produced synchronously at the end of the poll (also when
//     it ended early); the offset book holds it like a buffered record until the
//     topic acknowledged it (Engine.DeadLettered).
//  3. Buffer (engine.go, memory.go): the row is appended to the buffer of its
//     (partition, table, period), after reserving exactly the bytes it adds within
//     the buffers' share of flush.memory_budget; over budget, the largest buffers
//     are sealed early, and Process blocks until uploads free memory.
//  4. Seal (engine.go): a buffer is sealed by size, age (Tick), memory pressure,
//     the optional cap on open partitions (the least recently written), a revoke or
//     shutdown.
//  5. Upload (worker.go): a worker encodes the sealed buffer (rawfile.Encoder) and
//     streams it to the key named by its first offset, with create-if-absent. A key
//     that exists was written by an earlier run: its range becomes durable and the
//     rest goes to the next key. The buffer's range becomes durable in the book.
//  6. Commit (book.go, Engine.Commits, Sink.commit): each partition commits the
//     lowest offset still held in any buffer or waiting for its dead letter (or the
//     next to fetch), with the durable ranges above it in the commit metadata, or,
//     when they do not fit in its 4 KiB, in a checkpoint object written before the
//     commit and named by it (checkpoint.go), so a replay skips them. On
//     revoke, the partitions' buffers are sealed, waited for and committed before
//     release; lost partitions are dropped without commit.
package sink
