// Package audit proves (or disproves) DESIGN.md §2's "every committed offset is
// in exactly one place". It owns lakesink audit: gathering, per Kafka
// partition, the committed window (log start, or the first offset at --since,
// up to the group's commit point), the raw zone's footers, the Iceberg table's
// coverage footers and the dead-letter headers; the range arithmetic over them
// (interval.go); and the report (findings, summary table, JSON).
//
// What counts, per topic-partition, over the committed window:
//
//   - lost: an offset that holds a data record (read_committed: transaction
//     markers and aborted records are not data) and is in no raw file, no table
//     file's coverage and no dead letter;
//   - duplicated rows: the same offset held twice by the raw zone (two raw
//     files, or a raw file and a dead letter), or twice by the table (two live
//     table files whose coverage overlaps in the same period, or one data file
//     referenced twice). An offset in a raw file and in the table at once is not
//     a duplicate: raw files stay until compaction.raw_grace after they are
//     merged, and the table is what readers see;
//   - missing files: data files the table's current snapshot references that
//     are not in storage.
//
// A dead letter repeated for the same source offset (a crash between the
// dead-letter acknowledgement and the offset commit) is reported as a note,
// not a finding: replay dedupes by source coordinates.
//
// Cost: one listing of the raw zone, one footer read per raw file, the table's
// manifests and one footer read per live table file, the dead-letter topic once,
// and three or four Kafka offset requests per table. Data pages are read only
// where a range is in doubt: a hole is read from Kafka (read_committed) to tell
// data records from markers; a stretch of overlapping raw files (raw files that
// merely touch are counted apart) whose rows and dead letters do not add up to
// its offsets is settled by reading the files' _kafka_offset column and the
// stretch from Kafka; overlapping files are read to count the rows they share.
//
// Limits: a stretch that table coverage touches is checked by ranges only, so
// within it a dropped dead letter, or a lost raw file of one period whose
// offsets lie inside another period's range, is not seen (table files record
// raw ranges, not row counts per partition).
package audit
