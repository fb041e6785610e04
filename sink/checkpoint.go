package sink

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
)

// Offset checkpoints. The durable ranges above a partition's commit point go in the
// offset commit's metadata while they fit (MaxMetadata). When they do not (thousands
// of open hours, memory flushes of the largest buffers while a small one holds the
// commit point back), they go to a checkpoint object instead, and the metadata names
// it: "ls1@<key>". The order makes a crash at any point safe:
//
//  1. the object is written with a conditional PUT under a fresh key
//     (layout.CheckpointKey: the commit point and a unique suffix), so it never
//     replaces an object that a commit names;
//  2. the offset commit names it;
//  3. the object the previous commit named is deleted, at the next commit.
//
// Killed between 1 and 2, the previous commit and the object it names are intact: a
// restart replays from there, and the new object is an orphan no commit names (a few
// KB, under checkpoints/<group>/). Killed between 2 and 3, the old object is the
// orphan. A checkpoint that cannot be written leaves its partition's commit for the
// next round; a checkpoint that cannot be read at assignment fails the group session
// (franz-go rejoins), it is never ignored: that would write the ranges twice.

// metaCheckpoint starts commit metadata that names a checkpoint object.
const metaCheckpoint = metaVersion + "@"

// checkpoint writes the checkpoint objects of the commits whose ranges do not fit in
// the metadata and points their metadata at them; it returns the commits that may
// be sent (those whose object is durable, and those that need none). It deletes the
// checkpoint objects earlier commits made stale first.
func (s *Sink) checkpoint(ctx context.Context, commits []Commit) []Commit {
	if stale := s.eng.StaleCheckpoints(); len(stale) > 0 {
		if err := s.st.Delete(ctx, stale...); err != nil {
			s.log.Warn("deleting stale offset checkpoints", "err", err, "objects", len(stale))
		}
	}
	out := commits[:0]
	for _, c := range commits {
		if c.Checkpoint == "" {
			out = append(out, c)
			continue
		}
		key := layout.CheckpointKey(s.group, c.Topic, c.Partition, c.Offset, strconv.FormatInt(time.Now().UnixNano(), 36))
		if err := s.st.Create(ctx, key, strings.NewReader(c.Checkpoint)); err != nil {
			s.log.Warn("writing offset checkpoint failed; committing the partition later", "topic", c.Topic,
				"partition", c.Partition, "offset", c.Offset, "file", key, "err", err)
			continue
		}
		s.m.Checkpoints.Inc()
		c.CheckpointKey, c.Metadata = key, metaCheckpoint+key
		out = append(out, c)
	}
	return out
}

// resolveMeta returns the ranges of fetched commit metadata and the checkpoint
// object they came from ("" when inline). It retries an unreadable object a few
// times, then returns the error.
func (s *Sink) resolveMeta(ctx context.Context, meta string) (ranges, key string, err error) {
	key, ok := strings.CutPrefix(meta, metaCheckpoint)
	if !ok {
		return meta, "", nil
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		data, err := s.st.Get(ctx, key)
		if store.IsNotFound(err) {
			// Deleted by hand, or lost: nothing to read the ranges from. A replay may
			// then write records again, which the compactor drops (dedupe by Kafka
			// coordinates); stopping for good would be worse.
			s.log.Error("offset checkpoint named by the commit is missing; replaying without its ranges", "file", key)
			return metaVersion, "", nil
		}
		if err == nil {
			if !strings.HasPrefix(string(data), metaVersion) {
				return "", "", fmt.Errorf("offset checkpoint %s: not a checkpoint (%.20q)", key, data)
			}
			return string(data), key, nil
		}
		if attempt == 5 || ctx.Err() != nil {
			return "", "", fmt.Errorf("read offset checkpoint %s: %w", key, err)
		}
		s.log.Warn("reading offset checkpoint failed; retrying", "file", key, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}
