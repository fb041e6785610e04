package main

// What the sink measures (e2e, latency, partitions) share: the bed's bucket, a
// topic with its dead-letter topic, and a `lakesink sink` child on them.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/store"
)

// bulkProducer is how the measures pre-fill a topic: large lz4 batches.
var bulkProducer = []kgo.Opt{kgo.ProducerLinger(20 * time.Millisecond), kgo.ProducerBatchMaxBytes(4 << 20),
	kgo.MaxBufferedRecords(200_000), kgo.ProducerBatchCompression(kgo.Lz4Compression())}

// benchS3 is the test bed's bucket, under prefix.
func benchS3(prefix string) store.S3Config {
	return store.S3Config{Bucket: env("LAKESINK_TEST_S3_BUCKET"), Prefix: prefix, Region: env("LAKESINK_TEST_S3_REGION"),
		Endpoint: env("LAKESINK_TEST_S3_ENDPOINT"), PathStyle: true,
		AccessKeyID: env("LAKESINK_TEST_S3_ACCESS_KEY"), SecretAccessKey: env("LAKESINK_TEST_S3_SECRET_KEY")}
}

// benchTopic creates topic name (parts partitions, the given topic configs) and its
// dead-letter topic name-dlq on the bed's Kafka, and returns a client (the seed
// brokers plus opts) and an admin client on it. done deletes both topics and closes
// the client.
func benchTopic(ctx context.Context, name string, parts int32, configs map[string]*string, opts ...kgo.Opt) (cl *kgo.Client, adm *kadm.Client, done func(), err error) {
	brokers := strings.Split(env("LAKESINK_TEST_KAFKA_BROKERS"), ",")
	cl, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return nil, nil, nil, err
	}
	adm = kadm.NewClient(cl)
	done = func() {
		_, _ = adm.DeleteTopics(context.Background(), name, name+"-dlq")
		cl.Close()
	}
	if _, err := adm.CreateTopic(ctx, parts, 1, configs, name); err != nil {
		done()
		return nil, nil, nil, err
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, name+"-dlq"); err != nil {
		done()
		return nil, nil, nil, err
	}
	return cl, adm, done, nil
}

// sinkRun is a running `lakesink sink` child.
type sinkRun struct {
	cmd     *exec.Cmd
	port    int
	cfgPath string
	started time.Time
	stopRSS func() int64
	exited  chan struct{} // closed when the child has exited; waitErr is set then
	waitErr error
}

// startSink starts bin as a sink of the sample table on topic name: the bed's Kafka
// (group name), its bucket under prefix name/, dead letters to name-dlq, the given
// flush section, metrics on a free loopback port, GOMAXPROCS=2. Its peak RSS is
// watched from the start.
func startSink(bin, name, flush string) (*sinkRun, error) {
	return startSinkTables(bin, name, flush, gen.TableYAML("events", name))
}

// startSinkTables is startSink with the given tables section (YAML list items).
func startSinkTables(bin, name, flush, tables string) (*sinkRun, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s3cfg := benchS3(name + "/")
	cfgPath := filepath.Join(os.TempDir(), name+".yaml")
	y := fmt.Sprintf(`kafka: {brokers: [%s], group: %s, commit_interval: 1s}
s3: {bucket: %s, prefix: %s/, region: %s, endpoint: %s, path_style: true}
dead_letter: {topic: %s-dlq}
http: {listen: "127.0.0.1:%d"}
log: {level: warn}
flush: %s
tables:
%s`, env("LAKESINK_TEST_KAFKA_BROKERS"), name, s3cfg.Bucket, name, s3cfg.Region, s3cfg.Endpoint, name, port, flush,
		tables)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		return nil, err
	}
	args := []string{"sink", "-c", cfgPath}
	if dir := os.Getenv("BENCH_SINK_PROFILES"); dir != "" {
		// A CPU profile of each sink's whole run, for go tool pprof.
		args = append(args, "--cpuprofile", filepath.Join(dir, name+".pprof"))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s3cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+s3cfg.SecretAccessKey, "GOMAXPROCS=2")
	s := &sinkRun{cmd: cmd, port: port, cfgPath: cfgPath, started: time.Now(), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		os.Remove(cfgPath)
		return nil, err
	}
	s.stopRSS = watchRSS(cmd.Process.Pid)
	go func() { s.waitErr = cmd.Wait(); close(s.exited) }()
	return s, nil
}

// stop sends SIGTERM, waits for the exit and removes the config; it returns the
// child's error and its peak RSS in KiB. Calling it again does nothing.
func (s *sinkRun) stop() (int64, error) {
	select {
	case <-s.exited:
		os.Remove(s.cfgPath)
		return s.stopRSS(), s.waitErr
	default:
	}
	defer os.Remove(s.cfgPath)
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.exited
	return s.stopRSS(), s.waitErr
}

// drain waits until the sink has decoded n events (watch sees every metrics page),
// then stops it: the shutdown flush, upload and commit are part of the measured
// time, which ends when the process exits. The sink's group (named as its topic)
// must lag by nothing afterwards. It returns the wall time from the start, the child's CPU time
// (user+sys) and its peak RSS in KiB.
func (s *sinkRun) drain(ctx context.Context, adm *kadm.Client, group string, n int, watch func(page string)) (wall, cpu time.Duration, rssKiB int64, err error) {
	for {
		page := scrape(s.port)
		if watch != nil {
			watch(page)
		}
		if decoded(page) >= float64(n) {
			break
		}
		select {
		case <-s.exited: // a config error, a crash: do not wait 30 minutes for it
			_, err := s.stop()
			return 0, 0, 0, fmt.Errorf("sink exited before draining: %v", err)
		default:
		}
		// Every 100 ms: each scrape costs the sink CPU (Gather, the process collector's
		// /proc reads), which at 50 scrapes a second was 2 % of what it measured; a
		// real Prometheus scrapes every 15–60 s.
		time.Sleep(100 * time.Millisecond)
		if time.Since(s.started) > 30*time.Minute {
			_ = s.cmd.Process.Kill()
			_, _ = s.stop()
			return 0, 0, 0, fmt.Errorf("not drained in 30 minutes")
		}
	}
	rssKiB, err = s.stop()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("sink: %w", err)
	}
	wall = time.Since(s.started)
	lag, err := adm.Lag(ctx, group)
	if err != nil {
		return 0, 0, 0, err
	}
	l := lag[group]
	if err := l.Error(); err != nil {
		return 0, 0, 0, fmt.Errorf("lag of group %s after the run: %w", group, err)
	}
	if l.Lag.Total() != 0 {
		return 0, 0, 0, fmt.Errorf("after the run the group still lags by %d records", l.Lag.Total())
	}
	ru := s.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return wall, time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), rssKiB, nil
}
