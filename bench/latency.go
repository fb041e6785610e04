package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

// Latency is what the steady-rate measure found: per event, the time from
// handing it to the producer until the raw file holding it is listed in S3,
// and until the sink's group has committed past it.
type Latency struct {
	Rate          int     `json:"events_per_second"`
	Seconds       int     `json:"seconds"`
	Events        int     `json:"events"`
	MaxAgeSeconds float64 `json:"max_age_seconds"`
	VisibleP50    float64 `json:"visible_p50_seconds"`
	VisibleP99    float64 `json:"visible_p99_seconds"`
	VisibleMax    float64 `json:"visible_max_seconds"`
	CommitP50     float64 `json:"commit_p50_seconds"`
	CommitP99     float64 `json:"commit_p99_seconds"`
	CommitMax     float64 `json:"commit_max_seconds"`
}

const latencyMaxAge = 10 * time.Second

// latency runs the real sink on an empty topic, produces events at a steady
// rate for the given time, and watches the bucket and the group's commits.
func latency(bin string, rate, seconds int) (Latency, error) {
	ctx := context.Background()
	name := fmt.Sprintf("bench-latency-%d", time.Now().UnixNano())
	const parts = 6
	cl, adm, done, err := benchTopic(ctx, name, parts, nil, kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return Latency{}, err
	}
	defer done()
	st, err := store.NewS3(ctx, benchS3(name+"/"))
	if err != nil {
		return Latency{}, err
	}
	sk, err := startSink(bin, name, fmt.Sprintf("{max_file_bytes: 128MiB, memory_budget: 256MiB, max_age: %s}", latencyMaxAge))
	if err != nil {
		return Latency{}, err
	}
	defer sk.stop()
	for !strings.Contains(scrape(sk.port), "lakesink_") {
		time.Sleep(50 * time.Millisecond)
	}

	// Produce at the rate, remembering when each (partition, offset) was
	// handed over, while a watcher lists the bucket and the group's commits.
	n := rate * seconds
	sent := make([]time.Time, n)
	type coord struct {
		p int32
		o int64
	}
	var mu sync.Mutex
	at := map[coord]int{}
	visible := make([]time.Duration, n)
	committed := make([]time.Duration, n)
	watched := make(chan error, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		type span struct {
			p           int32
			first, last int64
			seen        time.Time
		}
		var pending []span // listed files whose offsets are not all resolved yet
		seenKeys := map[string]bool{}
		next := map[int32]int64{} // resolved commit position per partition
		nVisible, nCommitted := 0, 0
		for nVisible < n || nCommitted < n {
			if wctx.Err() != nil {
				watched <- fmt.Errorf("%d of %d events visible in S3, %d committed", nVisible, n, nCommitted)
				return
			}
			now := time.Now()
			var keys []string
			err := st.List(ctx, "raw/", func(o store.ObjectInfo) error {
				if !seenKeys[o.Key] {
					keys = append(keys, o.Key)
				}
				return nil
			})
			if err != nil {
				watched <- err
				return
			}
			for _, k := range keys {
				rf, err := layout.ParseRawKey(layout.Hour, k)
				if err != nil {
					watched <- err
					return
				}
				last, err := rawfile.ReadLastOffset(ctx, st, k)
				if err != nil {
					watched <- err
					return
				}
				seenKeys[k] = true
				pending = append(pending, span{rf.Partition, rf.FirstOffset, last, now})
			}
			offs, err := adm.FetchOffsets(ctx, name)
			if err != nil {
				watched <- err
				return
			}
			mu.Lock()
			kept := pending[:0]
			for _, sp := range pending {
				for ; sp.first <= sp.last; sp.first++ {
					i, ok := at[coord{sp.p, sp.first}]
					if !ok {
						break // its produce callback has not run yet
					}
					visible[i] = sp.seen.Sub(sent[i])
					nVisible++
				}
				if sp.first <= sp.last {
					kept = append(kept, sp)
				}
			}
			pending = kept
			offs.Each(func(o kadm.OffsetResponse) {
				for ; next[o.Partition] < o.At; next[o.Partition]++ {
					i, ok := at[coord{o.Partition, next[o.Partition]}]
					if !ok {
						break
					}
					committed[i] = now.Sub(sent[i])
					nCommitted++
				}
			})
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
		watched <- nil
	}()
	g := gen.New(7, time.Now().UTC(), time.Duration(seconds)*time.Second)
	fmt.Fprintf(os.Stderr, "bench: producing %d events/s for %d s into %s (flush.max_age %s)\n", rate, seconds, name, latencyMaxAge)
	start := time.Now()
	var perr error
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
		v, _ := g.Event(i, n)
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		cl.Produce(ctx, &kgo.Record{Topic: name, Value: append([]byte(nil), v...)}, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				perr = err
				return
			}
			at[coord{r.Partition, r.Offset}] = i
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return Latency{}, err
	}
	mu.Lock()
	err = perr
	mu.Unlock()
	if err != nil {
		return Latency{}, err
	}
	select {
	case err := <-watched:
		if err != nil {
			return Latency{}, err
		}
	case <-time.After(latencyMaxAge + 2*time.Minute):
		stopWatch()
		return Latency{}, fmt.Errorf("after the run: %w", <-watched)
	}
	vp50, vp99, vmax := quantiles(visible)
	cp50, cp99, cmax := quantiles(committed)
	return Latency{Rate: rate, Seconds: seconds, Events: n, MaxAgeSeconds: latencyMaxAge.Seconds(),
		VisibleP50: vp50, VisibleP99: vp99, VisibleMax: vmax, CommitP50: cp50, CommitP99: cp99, CommitMax: cmax}, nil
}

func quantiles(ds []time.Duration) (p50, p99, maxSeconds float64) {
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) float64 { return s[min(len(s)-1, int(f*float64(len(s))))].Seconds() }
	return q(0.50), q(0.99), s[len(s)-1].Seconds()
}
