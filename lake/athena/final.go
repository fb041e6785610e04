package athena

import (
	"fmt"
	"strings"
)

// FinalSuffix names the view of the final periods next to each Iceberg table.
const FinalSuffix = "_final"

// finalKey is the snapshot summary key the compactor records the table's
// final-through time under (compaction.SummaryFinalThrough; not imported:
// this package is a pure function of the config).
const finalKey = "lakesink.final-through"

// finalThrough is the SQL expression of the table's final-through time: the
// value of the latest snapshot that records one. element_at, not [], so a
// snapshot without the key (another writer, snapshot expiry) reads NULL.
func (p *plan) finalThrough() string {
	return fmt.Sprintf("(\n    SELECT from_iso8601_timestamp(element_at(s.summary, '%s'))\n    FROM %s s\n"+
		"    WHERE element_at(s.summary, '%s') IS NOT NULL\n    ORDER BY s.committed_at DESC\n    LIMIT 1\n)",
		finalKey, p.icebergName("$snapshots"), finalKey)
}

// finalSection prints (d): the view of the Iceberg table's final periods and
// the query that shows the final-through time.
func (p *plan) finalSection(w *writer) {
	unit, _ := p.periodWords()
	view := p.dmlName(p.t.Name + FinalSuffix)
	snaps := p.icebergName("$snapshots")
	w.note(
		fmt.Sprintf("(d) View %s: only the final %ss of the Iceberg table.", view, unit),
		fmt.Sprintf("%s is final when every Kafka partition of its topics has a watermark past its end", upper(an(unit))),
		fmt.Sprintf("plus compaction.lateness (%s), or compaction.max_wait (%s) after its end at the latest:", fmtDuration(p.cfg.Compaction.Lateness), fmtDuration(p.cfg.Compaction.MaxWait)),
		"the table then holds every event of it (records later than their watermark promised are",
		"merged by a later run, and counted by the sink in lakesink_late_records_total).",
		fmt.Sprintf("Each lakesink commit records the final-through time in its snapshot summary (%s,", finalKey),
		fmt.Sprintf("RFC 3339 UTC), read here from %s; the table property of the same name", snaps),
		"mirrors it (and also advances without new data, which makes no snapshot). A "+unit+" missing",
		"from this view before that time had no events. See docs/watermarks.md.",
	)
	var b strings.Builder
	b.WriteString("CREATE OR REPLACE VIEW " + view + " AS\nSELECT\n")
	for i, c := range p.cols {
		sep := ","
		if i == len(p.cols)-1 {
			sep = ""
		}
		b.WriteString("    " + dmlIdent(c.name) + sep + "\n")
	}
	b.WriteString("FROM " + p.icebergName("") + "\nWHERE " + dmlIdent(p.event) + " < " + p.finalThrough() + ";")
	w.stmt(b.String())

	w.note(fmt.Sprintf("The final-through time of %s and when it was committed.", p.t.Name))
	w.stmt(fmt.Sprintf("SELECT element_at(summary, '%s') AS \"final_through\", committed_at\nFROM %s\nWHERE element_at(summary, '%s') IS NOT NULL\nORDER BY committed_at DESC\nLIMIT 1;",
		finalKey, snaps, finalKey))
}
