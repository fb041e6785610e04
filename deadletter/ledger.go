package deadletter

import (
	"slices"
	"strconv"
	"strings"
)

// replayLedger is the replay state of one dead-letter partition, kept in the replay
// group's committed offset and its metadata string:
//
//   - frontier: every record below it has been judged by some replay;
//   - pending: offsets below the frontier that were judged but not replayed (still
//     failing, or left out by a filter): a later replay must look at them again.
//
// Every other offset below the frontier is done (replayed, or no record at all).
// The committed offset is the lowest pending offset (or the frontier), so a replay
// starts reading where it has work to do; the metadata carries the frontier and the
// pending offsets above the committed one. Filters therefore never hide a record
// from a later replay, and a replayed record is never replayed again.
type replayLedger struct {
	frontier int64
	pending  map[int64]bool
	ranges   int // runs of consecutive pending offsets (what the metadata size grows with)
}

// ledgerPrefix marks metadata written by a replay (franz-go writes its member id
// by default; anything else is read as "no pending offsets").
const ledgerPrefix = "lsr1:"

// maxLedgerRanges bounds the metadata (Kafka's offset.metadata.max.bytes is 4 KiB by
// default; a range costs at most ~14 bytes in base 36).
const maxLedgerRanges = 200

func newLedger(committed int64, meta string) *replayLedger {
	l := &replayLedger{frontier: committed, pending: map[int64]bool{}}
	if committed < 0 {
		l.frontier = 0
	}
	rest, ok := strings.CutPrefix(meta, ledgerPrefix)
	if !ok || committed < 0 {
		return l
	}
	parts := strings.Split(rest, ",")
	c, err := strconv.ParseInt(parts[0], 36, 64)
	if err != nil || c < 0 {
		return l
	}
	frontier := committed + c
	pos := committed
	pending := map[int64]bool{}
	for _, p := range parts[1:] {
		gapS, lenS, ok := strings.Cut(p, "+")
		gap, err1 := strconv.ParseInt(gapS, 36, 64)
		n, err2 := strconv.ParseInt(lenS, 36, 64)
		if !ok || err1 != nil || err2 != nil || gap < 0 || n <= 0 || pos+gap+n > frontier {
			return l // unreadable: start over from the committed offset
		}
		for o := pos + gap; o < pos+gap+n; o++ {
			pending[o] = true
		}
		pos += gap + n
	}
	l.frontier = frontier
	for o := range pending {
		l.add(o)
	}
	return l
}

// commitOffset is where the next replay starts reading.
func (l *replayLedger) commitOffset() int64 {
	c := l.frontier
	for o := range l.pending {
		c = min(c, o)
	}
	return c
}

// done reports whether a record at offset o needs no look (replayed earlier).
func (l *replayLedger) done(o int64) bool { return o < l.frontier && !l.pending[o] }

// canKeep reports whether o can be kept pending without overflowing the metadata.
func (l *replayLedger) canKeep(o int64) bool {
	return l.pending[o] || l.rangesAfterAdd(o) <= maxLedgerRanges
}

// canResolve reports whether o can leave the pending set without overflowing.
func (l *replayLedger) canResolve(o int64) bool {
	if !l.pending[o] {
		return true
	}
	d := -1
	if l.pending[o-1] {
		d++
	}
	if l.pending[o+1] {
		d++
	}
	return l.ranges+d <= maxLedgerRanges
}

func (l *replayLedger) rangesAfterAdd(o int64) int {
	d := 1
	if l.pending[o-1] {
		d--
	}
	if l.pending[o+1] {
		d--
	}
	return l.ranges + d
}

func (l *replayLedger) add(o int64) {
	if l.pending[o] {
		return
	}
	l.ranges = l.rangesAfterAdd(o)
	l.pending[o] = true
}

// judged records the outcome for the record at o: kept pending or resolved (replayed).
func (l *replayLedger) judged(o int64, keep bool) {
	if keep {
		l.add(o)
	} else if l.pending[o] {
		delete(l.pending, o)
		if l.pending[o-1] {
			l.ranges++
		}
		if l.pending[o+1] {
			l.ranges++
		}
		l.ranges--
	}
	l.frontier = max(l.frontier, o+1)
}

// passed moves the frontier past an offset that holds no record to judge (a
// transaction marker).
func (l *replayLedger) passed(o int64) { l.frontier = max(l.frontier, o+1) }

// prune forgets pending offsets below the log start (deleted by retention).
func (l *replayLedger) prune(logStart int64) {
	for o := range l.pending {
		if o < logStart {
			l.judged(o, false)
		}
	}
	l.frontier = max(l.frontier, logStart)
}

// metadata encodes the ledger relative to commitOffset: "lsr1:<frontier>,<gap>+<n>,...".
func (l *replayLedger) metadata() string {
	base := l.commitOffset()
	offs := make([]int64, 0, len(l.pending))
	for o := range l.pending {
		offs = append(offs, o)
	}
	slices.Sort(offs)
	var b strings.Builder
	b.WriteString(ledgerPrefix)
	b.WriteString(strconv.FormatInt(l.frontier-base, 36))
	pos := base
	for i := 0; i < len(offs); {
		j := i + 1
		for j < len(offs) && offs[j] == offs[j-1]+1 {
			j++
		}
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(offs[i]-pos, 36))
		b.WriteByte('+')
		b.WriteString(strconv.FormatInt(int64(j-i), 36))
		pos = offs[j-1] + 1
		i = j
	}
	return b.String()
}
