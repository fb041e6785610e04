package sink

import (
	"context"
	"fmt"
	"maps"
	"slices"
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
//
// Orphans are swept at assignment (sweepCheckpoints): once the committed offsets of
// newly assigned partitions are fetched and resolved, every object under those
// partitions' checkpoint prefixes but the one its commit names is deleted. Why no
// object a commit names, or will name, is deleted:
//
//   - The named object is read from the commit fetched after this member completed
//     the rebalance of the generation that assigned it the partition. The group
//     coordinator writes a group's commits and rebalances to one log in order and
//     answers SyncGroup once the new generation is written, so every commit accepted
//     in an earlier generation is visible to that fetch.
//   - A previous owner still running (a zombie: revoked or lost, not yet aware) may
//     write a checkpoint object after the fetch, or have one in flight, but its
//     commit carries its old generation (Sink.commit sends the generation it holds)
//     and the coordinator rejects it: no accepted commit ever names that object.
//     Deleting it is safe; one written after the listing stays until the next
//     assignment of the partition.
//   - This member writes a partition's checkpoints only at commits, and commits only
//     what it consumed: the sweep runs in OnOffsetsFetched, before franz-go starts
//     fetching the partition, so none of this member's objects exist yet. (The sweep
//     runs inline for that reason: off the critical path it would race the first
//     checkpoints. It costs one LIST per topic and one DELETE when there are orphans.)
//   - A partition whose offset fetch failed is not swept: its commit is unknown.
//
// A failed list or delete logs a warning and counts
// lakesink_offset_checkpoint_sweep_errors_total; it never fails the assignment (the
// orphans wait for the next one).

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

// sweepTimeout bounds the orphan sweep at assignment, which delays the start of
// consumption of the partitions assigned.
const sweepTimeout = 10 * time.Second

// checkpointNamed returns the checkpoint key commit metadata names ("" for none).
func checkpointNamed(meta *string) string {
	if meta == nil {
		return ""
	}
	if key, ok := strings.CutPrefix(*meta, metaCheckpoint); ok {
		return key
	}
	return ""
}

// sweepCheckpoints deletes the orphan checkpoint objects of newly assigned
// partitions (see the top of this file for why this is safe). named maps the
// checkpoint prefix of each partition whose commit was fetched (layout.
// CheckpointPrefix) to the key that commit names, "" for none; topics are their
// topics. Errors are logged and counted, never returned.
func (s *Sink) sweepCheckpoints(ctx context.Context, topics map[string]bool, named map[string]string) {
	if len(named) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	var listed []string
	for _, topic := range slices.Sorted(maps.Keys(topics)) {
		err := s.st.List(ctx, layout.CheckpointTopicPrefix(s.group, topic), func(o store.ObjectInfo) error {
			listed = append(listed, o.Key)
			return nil
		})
		if err != nil {
			s.m.CheckpointSweepErrs.Inc()
			s.log.Warn("listing offset checkpoints to sweep orphans; they stay until the next assignment", "topic", topic, "err", err)
			return
		}
	}
	orphans := orphanCheckpoints(listed, named)
	if len(orphans) == 0 {
		return
	}
	if err := s.st.Delete(ctx, orphans...); err != nil {
		s.m.CheckpointSweepErrs.Inc()
		s.log.Warn("deleting orphan offset checkpoints; they stay until the next assignment", "objects", len(orphans), "err", err)
		return
	}
	s.m.CheckpointsSwept.Add(float64(len(orphans)))
	s.log.Info("swept orphan offset checkpoints", "objects", len(orphans), "file", orphans[0])
}

// orphanCheckpoints returns the keys of listed that lie directly under a partition
// prefix of named and are not the key named for it.
func orphanCheckpoints(listed []string, named map[string]string) []string {
	var out []string
	for _, k := range listed {
		prefix := k[:strings.LastIndexByte(k, '/')+1]
		if n, ok := named[prefix]; ok && k != n {
			out = append(out, k)
		}
	}
	return out
}
