package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the summary table (one line per topic-partition), then
// every finding and note, then a one-line verdict.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tTOPIC\tPART\tAUDITED\tRAW FILES\tTABLE RANGES\tDEAD LETTERS\tLOST\tDUP ROWS\tREAD")
	for _, p := range r.Partitions {
		win := "-"
		switch {
		case p.Committed < 0:
			win = "no commit"
		case p.Window.Len() > 0:
			win = p.Window.String()
		}
		read := "-"
		if p.KafkaReads+p.FileReads > 0 {
			read = fmt.Sprintf("%d kafka, %d files", p.KafkaReads, p.FileReads)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Table, p.Topic, p.Partition, win,
			p.RawFiles, p.TableRanges, p.DeadLetters, p.LostCount, p.DupRows, read)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.Partitions {
		if p.LostCount > 0 {
			fmt.Fprintf(w, "LOST     %s %s/%d: %d committed offsets in no raw file, table file or dead letter: %s\n",
				p.Table, p.Topic, p.Partition, p.LostCount, fmtSet(p.Lost))
		}
		for _, d := range p.Dups {
			fmt.Fprintf(w, "DUP      %s %s/%d: %s\n", p.Table, p.Topic, p.Partition, d)
		}
		if p.DeadLetterRepeats > 0 {
			fmt.Fprintf(w, "note     %s %s/%d: %d dead letters repeat a source offset (replay dedupes them)\n",
				p.Table, p.Topic, p.Partition, p.DeadLetterRepeats)
		}
	}
	for _, d := range r.TwiceReferenced {
		fmt.Fprintf(w, "DUP      table file %s is referenced twice by the current snapshot: %d rows doubled\n", d.Files[0], d.Rows)
	}
	for _, m := range r.Missing {
		fmt.Fprintf(w, "MISSING  %s: data file %s is referenced by the table but not in storage\n", m.Table, m.Path)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note     %s\n", n)
	}
	verdict := "clean"
	if r.Findings() {
		verdict = "FINDINGS"
	}
	_, err := fmt.Fprintf(w, "audit %s: %d partitions, %d lost, %d duplicated rows, %d missing files; read %d raw and %d table footers, %d dead letters, %d store requests, %d Kafka ranges and %d files in doubt, in %.1fs\n",
		verdict, len(r.Partitions), r.Lost, r.DupRows, r.MissingFiles, r.Cost.RawFiles, r.Cost.TableFiles, r.Cost.DeadLetters,
		r.Cost.StoreRequests, r.Cost.KafkaRangesRead, r.Cost.PagesReadFiles, r.Cost.Seconds)
	return err
}
