package sink

import (
	"log/slog"

	"github.com/lakesink/lakesink/lake/config"
)

// flush.memory_budget bounds the process's Go memory, not only its buffers: it covers
// the buffers, the uploads in flight (Parquet pages, the store's part buffers:
// uploadCost), each worker's Parquet writer (writerFixed), the Kafka client's fetches
// (fetchMemory) and a fixed share for the rest of the heap (runtimeMemory). The
// process sets its Go memory limit just above the budget (cmd/lakesink), and the
// binary's own code and data pages come on top (~64 MiB resident, docs/performance.md).
//
// What the budget leaves for buffers, with the e2e test's 64 MiB, 5 MiB parts,
// 2 workers and its 8-leaf table: 64 - 8 (fetches) - 8 (rest of the heap) - 10 (part
// buffers) - 6 (writers) - 8 (garbage) = 24 MiB for buffers and uploads in flight.

// runtimeMemory is the heap the sink holds besides buffers, uploads and fetches:
// clients, metrics, decoders, the offset book (measured: ~8 MiB).
const runtimeMemory = 8 << 20

// writerFixed is what one worker's Parquet writer holds whatever the file's size: a
// page of values per column being built and encoded (page buffers of 256 KiB,
// lake/schema, are filled for large files only, so half of it is counted) and a zstd
// encoder with its history (codec.go). Measured (heap profile, 2 writers of 8 MiB
// files of the sample table, 17 leaf columns): ~11 MiB each, including the compressed
// pages, which uploadCost counts. Each worker keeps its writer between small files
// (worker.go: 1.7 MiB after a 100-row file of the sample table, 3.8 MiB after one of
// 1 MiB buffered, 21 leaves: within this), so it is counted for every worker, all the
// time (bufferBudget), not per upload.
func writerFixed(columns int) int64 {
	return int64(columns)*(128<<10) + 2<<20
}

// uploadCost is the memory the upload of b holds besides b itself and the worker's
// writer: the writer's growth and the compressed pages of the row group until it is
// written (the buffer is written column after column; assumed at most half the
// buffered bytes) and the store's part buffers (the S3 store reads the body into
// part-size buffers: one for a file that fits in a part, counted per worker in
// bufferBudget, which over-counts a file below 256 KiB, read into a buffer of that
// size instead; up to upload_concurrency+1 for a multipart upload). Each upload
// counts at most half the buffer budget over the workers, so that a budget too small
// for the uploads still lets buffers fill (bufferBudget logs it). Called with e.mu
// held.
func (e *Engine) uploadCost(b *buffer) int64 {
	file := b.bytes / 2
	cost := file
	if e.partSize > 0 && file > e.partSize {
		// The first part buffer is counted once per worker (bufferBudget).
		cost += (min(e.partsInFlight, (file+e.partSize-1)/e.partSize+1) - 1) * e.partSize
	}
	return min(cost, e.bufferBudget/int64(2*max(e.flush.Workers, 1)))
}

// fetchMemory is what the Kafka client holds: a fetch response decompressed (JSON
// compresses ~4× with the producers' snappy or lz4) and the records of a poll made
// from it. Measured with 2 MiB fetches of snappy JSON: ~18 MiB (heap profile).
func fetchMemory(cfg *config.Config) int64 {
	return 8 * fetchMaxBytes(cfg)
}

// fetchMaxBytes is the fetch size the consumer uses, also per partition:
// kafka.fetch_max_bytes, but at most a sixty-fourth of the memory budget (1 MiB of
// 64 MiB, 16 MiB of 1 GiB), so that a small budget is not spent on fetches.
func fetchMaxBytes(cfg *config.Config) int64 {
	return max(min(int64(cfg.Kafka.FetchMaxBytes), int64(cfg.Flush.MemoryBudget)/64), 1<<20)
}

// bufferBudget is the share of flush.memory_budget left for the buffers and the
// uploads in flight once the fetches, the rest of the heap, the store's pooled part
// buffers and the Parquet writers (one of each per worker, kept between uploads;
// writer: writerFixed of the widest table) and room for garbage between collections
// (an eighth) are counted; never less than a quarter of the budget.
func bufferBudget(cfg *config.Config, writer int64, log *slog.Logger) int64 {
	budget := int64(cfg.Flush.MemoryBudget)
	fetch := fetchMemory(cfg)
	var parts int64
	if cfg.LocalDir == "" {
		parts = int64(cfg.Flush.Workers) * int64(cfg.S3.PartSize)
	}
	writers := int64(cfg.Flush.Workers) * writer
	left := budget - fetch - runtimeMemory - parts - writers - budget/8
	if left < budget/4 {
		log.Warn("flush.memory_budget leaves little room for buffers: raise it, or lower s3.part_size or flush.workers",
			"budget", budget, "fetch", fetch, "part_buffers", parts, "writers", writers)
		left = budget / 4
	}
	log.Info("memory budget", "budget", budget, "buffers_and_uploads", left, "fetch", fetch, "part_buffers", parts,
		"writers", writers, "runtime", runtimeMemory, "garbage", budget/8)
	return left
}
