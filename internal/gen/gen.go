// Package gen generates realistic sample events (about 500 bytes of JSON, a dozen
// fields with strings, numbers, a timestamp, a nested object and an array) for the
// demo, the end-to-end tests and the benchmarks, together with the matching table config.
package gen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Events generates events deterministically from a seed.
type Events struct {
	r     *rand.Rand
	start time.Time
	span  time.Duration
	// LateFraction of events get an event time up to LateBy earlier than their slot.
	LateFraction float64
	LateBy       time.Duration
	buf          []byte
}

// New returns a generator whose event times cover [start, start+span), in order
// but for a fraction of late and out-of-order events.
func New(seed uint64, start time.Time, span time.Duration) *Events {
	return &Events{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: start.UTC(), span: span,
		LateFraction: 0.03, LateBy: 2 * time.Hour}
}

var (
	types     = []string{"page_view", "add_to_cart", "checkout", "search", "login", "logout", "purchase"}
	countries = []string{"DE", "US", "FR", "GB", "JP", "BR", "IN", "NL", "SE", "ES"}
	oses      = []string{"ios", "android", "windows", "macos", "linux"}
	tags      = []string{"promo", "mobile", "returning", "new", "beta", "vip", "organic", "paid"}
)

// Time returns the event time of event i out of n.
func (g *Events) Time(i, n int) time.Time {
	t := g.start.Add(time.Duration(float64(g.span) * float64(i) / float64(max(n, 1))))
	if g.r.Float64() < g.LateFraction {
		t = t.Add(-time.Duration(g.r.Int64N(int64(g.LateBy))))
		if t.Before(g.start) {
			t = g.start.Add(time.Duration(g.r.Int64N(int64(time.Minute))))
		}
	}
	return t
}

// Event returns the JSON of event i of n (the slice is reused by the next call) and its event time.
func (g *Events) Event(i, n int) ([]byte, time.Time) {
	ts := g.Time(i, n)
	r := g.r
	b := g.buf[:0]
	b = append(b, `{"event_id":"evt-`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `","ts":"`...)
	b = ts.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","user_id":`...)
	b = strconv.AppendInt(b, r.Int64N(5_000_000), 10)
	b = append(b, `,"session_id":"s-`...)
	b = strconv.AppendUint(b, r.Uint64(), 36)
	b = append(b, `","type":"`...)
	b = append(b, types[r.IntN(len(types))]...)
	b = append(b, `","url":"https://shop.example.com/products/`...)
	b = strconv.AppendInt(b, r.Int64N(100_000), 10)
	b = append(b, `?utm_source=newsletter&utm_campaign=winter-sale-`...)
	b = strconv.AppendInt(b, r.Int64N(50), 10)
	b = append(b, `","referrer":"https://www.example.org/search?q=`...)
	b = strconv.AppendUint(b, r.Uint64(), 36)
	b = append(b, `","amount":`...)
	b = strconv.AppendInt(b, r.Int64N(100_000), 10)
	b = append(b, '.')
	b = append(b, byte('0'+r.IntN(10)), byte('0'+r.IntN(10)))
	b = append(b, `,"quantity":`...)
	b = strconv.AppendInt(b, 1+r.Int64N(9), 10)
	b = append(b, `,"country":"`...)
	b = append(b, countries[r.IntN(len(countries))]...)
	b = append(b, `","device":{"os":"`...)
	b = append(b, oses[r.IntN(len(oses))]...)
	b = append(b, `","version":"`...)
	b = strconv.AppendInt(b, 10+r.Int64N(8), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, r.Int64N(10), 10)
	b = append(b, `","model":"model-`...)
	b = strconv.AppendInt(b, r.Int64N(400), 10)
	b = append(b, `"},"tags":[`...)
	for j, k := 0, r.IntN(4); j < k; j++ {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, tags[r.IntN(len(tags))]...)
		b = append(b, '"')
	}
	b = append(b, `],"ok":`...)
	b = strconv.AppendBool(b, r.IntN(20) != 0)
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendFloat(b, r.Float64()*250, 'f', 3, 64)
	b = append(b, `,"user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/`...)
	b = strconv.AppendInt(b, 100+r.Int64N(40), 10)
	b = append(b, `.0 Safari/537.36"}`...)
	g.buf = b
	return b, ts
}

// TableYAML is the table declaration matching the generated events.
func TableYAML(name, topic string) string {
	return fmt.Sprintf(`  - name: %s
    topics: [%s]
    columns:
      - {name: event_id, type: string, required: true, dictionary: false}
      - {name: ts, type: timestamp, required: true}
      - {name: user_id, type: int64, required: true}
      - {name: session_id, type: string, dictionary: false}
      - {name: type, type: string}
      - {name: url, type: string, dictionary: false}
      - {name: referrer, type: string, dictionary: false}
      - {name: amount, type: "decimal(12,2)"}
      - {name: quantity, type: int32}
      - {name: country, type: string}
      - {name: device, type: "struct<os:string,version:string,model:string>"}
      - {name: tags, type: "list<string>"}
      - {name: ok, type: bool}
      - {name: latency_ms, type: float64}
      - {name: user_agent, type: string}
    event_time: {column: ts, granularity: hour}
    sort_by: [ts]
`, name, topic)
}
