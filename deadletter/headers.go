package deadletter

import (
	"errors"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/decode"
)

// Dead-letter headers added to every rejected record (the original key, value,
// headers and timestamp are kept as they were).
const (
	HeaderReason    = "lakesink.reason"
	HeaderError     = "lakesink.error"
	HeaderTable     = "lakesink.table"
	HeaderTopic     = "lakesink.source.topic"
	HeaderPartition = "lakesink.source.partition"
	HeaderOffset    = "lakesink.source.offset"
	HeaderTime      = "lakesink.time"
)

// HeaderReplayedFrom is added to a record produced back to its source topic by a
// replay: "<dead-letter topic>/<partition>/<offset>".
const HeaderReplayedFrom = "lakesink.replayed-from"

// Reason is the dead-letter reason of err: a *decode.Rejection's reason, else "error".
func Reason(err error) string {
	var rej *decode.Rejection
	if errors.As(err, &rej) {
		return rej.Reason
	}
	return "error"
}

// Record returns the dead letter of r for topic (dead_letter.topic): r's key, value,
// timestamp and headers, plus the lakesink.* headers saying why (reason, err), which
// table rejected it, where it came from and when (now).
func Record(r *kgo.Record, topic, table, reason string, err error, now time.Time) *kgo.Record {
	headers := append([]kgo.RecordHeader(nil), r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(err.Error())},
		kgo.RecordHeader{Key: HeaderTable, Value: []byte(table)},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HeaderOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: headers, Timestamp: r.Timestamp}
}
