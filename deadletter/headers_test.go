package deadletter_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/deadletter"
	"github.com/lakesink/lakesink/decode"
)

// TestRecord checks the dead letter of a rejected record: its key, value, timestamp
// and headers as they were, plus the lakesink.* headers saying why, which table,
// where from and when; Reason is a rejection's reason, else "error".
func TestRecord(t *testing.T) {
	ts := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	now := time.Date(2026, 11, 24, 15, 0, 0, 123, time.UTC)
	src := &kgo.Record{Topic: "events", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("v"), Timestamp: ts,
		Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("app")}}}
	rej := fmt.Errorf("decode: %w", decode.NoTable("events"))
	if got := deadletter.Reason(rej); got != decode.ReasonNoTable {
		t.Errorf("Reason of a wrapped rejection: %q", got)
	}
	if got := deadletter.Reason(errors.New("boom")); got != "error" {
		t.Errorf("Reason of a plain error: %q", got)
	}
	dl := deadletter.Record(src, "events-dlq", "t", deadletter.Reason(rej), rej, now)
	if dl.Topic != "events-dlq" || string(dl.Key) != "k" || string(dl.Value) != "v" || !dl.Timestamp.Equal(ts) {
		t.Fatalf("dead letter %+v: want the source's key, value and timestamp on events-dlq", dl)
	}
	h := map[string]string{}
	for _, x := range dl.Headers {
		h[x.Key] = string(x.Value)
	}
	want := map[string]string{
		"origin":                   "app",
		deadletter.HeaderReason:    decode.ReasonNoTable,
		deadletter.HeaderError:     rej.Error(),
		deadletter.HeaderTable:     "t",
		deadletter.HeaderTopic:     "events",
		deadletter.HeaderPartition: "3",
		deadletter.HeaderOffset:    "42",
		deadletter.HeaderTime:      now.Format(time.RFC3339Nano),
	}
	if len(h) != len(want) {
		t.Errorf("headers %v, want %v", h, want)
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	if len(src.Headers) != 1 {
		t.Errorf("the source record's headers changed: %v", src.Headers)
	}
}
