package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/gen"
)

// Torture mode (issue 13 §2): for a duration, a driver seeded from
// LAKESINK_TORTURE_SEED interleaves kills of the sinks (SIGKILL and SIGTERM), runs
// and kills of the compactor, kill -9 and restart of the test's own broker, and
// cuts of the fault proxy between every client and that broker, while a producer
// keeps writing good and bad records into the last three closed hours (so late
// events keep landing in hours already compacted). Then the faults stop, a sink
// catches up, a last compaction runs and the invariant check of every scenario
// (audit, dead letters, DuckDB counts) must hold.
//
// Every action is printed with its time since the start; the sequence of actions
// and their parameters replays from the seed (the timing of the processes is the
// machine's). make test runs seed 1 for 50 s (about 80 s with the broker's start and
// the final checks); make torture SEED=... DURATION=...
// runs longer ones.

const (
	envTortureSeed     = "LAKESINK_TORTURE_SEED"
	envTortureDuration = "LAKESINK_TORTURE_DURATION"
)

// term sends SIGTERM and waits up to timeout for the exit; it returns the exit error
// (nil for a clean exit) and kills the process if it does not exit in time.
func (p *proc) term(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		p.kill9(nil)
		return fmt.Errorf("no exit within %s of SIGTERM: killed", timeout)
	}
}

func TestTorture(t *testing.T) {
	seed := uint64(1)
	if v := os.Getenv(envTortureSeed); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envTortureSeed, v, err)
		}
		seed = n
	}
	dur := 50 * time.Second
	if v := os.Getenv(envTortureDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration (30m)", envTortureDuration, v)
		}
		dur = d
	}
	rig := newKafkaRig(t)
	const parts = 4
	s := newScenario(t, []string{rig.proxy.addr()}, parts, "")
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	begin := time.Now()
	logf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		fmt.Printf("torture %s +%8.3fs %s\n", time.Now().UTC().Format("15:04:05.000"), time.Since(begin).Seconds(), msg)
	}
	logf("seed %d, duration %s, topic %s, lake prefix %s, own broker pid %d behind proxy %s",
		seed, dur, s.topic, s.prefix, rig.broker.cmd.Process.Pid, rig.proxy.addr())

	// The producer: batches of 1,000 records, 1 % bad, every 0.2–1 s, until the duration ends.
	stopProduce := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		prng := rand.New(rand.NewPCG(seed, 1))
		for batch := 0; ; batch++ {
			select {
			case <-stopProduce:
				return
			default:
			}
			start := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
			g := gen.New(prng.Uint64(), start, 3*time.Hour)
			const n = 1000
			// A produce can fail for good while the broker is away (franz-go does not
			// retry a connection closed at its first read): the producer goes on, and
			// verify counts what the log holds.
			if err := s.produceEvents(n, 0.01, parts, func(i int) []byte { v, _ := g.Event(i, n); return v }); err != nil {
				logf("producer: %v (%d records failed so far; verify counts the log)", err, s.failed.Load())
			}
			time.Sleep(time.Duration(200+prng.IntN(800)) * time.Millisecond)
		}
	}()

	counts := map[string]int{}
	// termSink stops a sink with SIGTERM; one that does not exit within 90 s is
	// killed, counted and its log's last lines shown (an availability defect: the
	// data invariant is still checked at the end).
	termSink := func(p *proc, what string) {
		err := p.term(90 * time.Second)
		logf("SIGTERM sink pid %d%s: %v", p.cmd.Process.Pid, what, exitDesc(err))
		if err != nil && strings.HasPrefix(err.Error(), "no exit within") {
			counts["sink hung after SIGTERM"]++
			tail, _ := exec.Command("tail", "-n", "5", p.log).Output()
			logf("log of the hung sink (%s):\n%s", p.log, tail)
		}
	}
	var sinks []*proc
	startSink := func() {
		p := s.start(s.cfg)
		waitUp(t, p)
		sinks = append(sinks, p)
		logf("start sink pid %d (%d running)", p.cmd.Process.Pid, len(sinks))
	}
	// reap restarts sinks that exited by themselves (a Deployment would), and says so.
	reap := func() {
		for i := 0; i < len(sinks); i++ {
			if done, err := sinks[i].exitedErr(); done {
				tail, _ := exec.Command("tail", "-n", "3", sinks[i].log).Output()
				logf("sink pid %d exited by itself: %v; log (%s):\n%s", sinks[i].cmd.Process.Pid, exitDesc(err), sinks[i].log, tail)
				counts["sink exited by itself"]++
				sinks = slices.Delete(sinks, i, i+1)
				i--
			}
		}
		for len(sinks) == 0 {
			startSink()
		}
	}
	startSink()
	f := &lakeFixture{b: s.bed}
	deadline := begin.Add(dur)
	// The first six actions are one of each kind (sink kill -9, sink SIGTERM, join or
	// leave, broker kill -9, broker unreachable, compactor killed mid-run) in an order
	// drawn from the seed, so even a short run injects every fault; then they are
	// drawn by weight.
	first := rng.Perm(6)
	kinds := []int{0, 25, 40, 50, 62, 77}
	for step := 0; time.Now().Before(deadline); step++ {
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		reap()
		a := rng.IntN(100)
		forced := step < len(first)
		if forced {
			a = kinds[first[step]]
		}
		switch {
		case a < 25: // kill -9 a sink, start another
			p := sinks[rng.IntN(len(sinks))]
			logf("kill -9 sink pid %d", p.cmd.Process.Pid)
			p.kill9(t)
			sinks = slices.DeleteFunc(sinks, func(q *proc) bool { return q == p })
			counts["sink kill -9"]++
			startSink()
		case a < 40: // SIGTERM a sink, start another
			p := sinks[rng.IntN(len(sinks))]
			termSink(p, "")
			sinks = slices.DeleteFunc(sinks, func(q *proc) bool { return q == p })
			counts["sink SIGTERM"]++
			startSink()
		case a < 50: // a second sink joins, or one leaves (rebalance)
			if len(sinks) < 2 {
				startSink()
				counts["sink joined"]++
			} else {
				p := sinks[0]
				termSink(p, " (leave)")
				sinks = sinks[1:]
				counts["sink SIGTERM"]++
			}
		case a < 62: // kill -9 the broker and restart it
			old := rig.broker.cmd.Process.Pid
			rig.restartBroker(t)
			logf("kill -9 broker pid %d, restarted as pid %d", old, rig.broker.cmd.Process.Pid)
			counts["broker kill -9"]++
		case a < 77: // the broker unreachable for 1–8 s
			d := time.Duration(1000+rng.IntN(7000)) * time.Millisecond
			cut0, ref0 := rig.proxy.cut.Load(), rig.proxy.refused.Load()
			rig.proxy.setDown(true)
			time.Sleep(d)
			rig.proxy.setDown(false)
			logf("broker unreachable for %s: %d connections cut, %d refused", d, rig.proxy.cut.Load()-cut0, rig.proxy.refused.Load()-ref0)
			counts["broker unreachable"]++
		default: // compact; half the time kill -9 the compactor mid-run
			cmd := f.compactCmd(s.cfg)
			out := &watchWriter{match: " groups, ", seen: make(chan struct{})}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done, finished := make(chan error, 1), make(chan struct{})
			go func() { done <- cmd.Wait(); close(finished) }()
			if rng.IntN(2) == 0 || forced {
				after := time.Duration(200+rng.IntN(4000)) * time.Millisecond
				if forced { // mid-run: 0–30 ms after the plan is printed, before its merge commits
					after = time.Duration(rng.IntN(30)) * time.Millisecond
					select {
					case <-out.seen:
					case <-finished:
					case <-time.After(2 * time.Minute):
					}
				}
				select {
				case err := <-done:
					logf("compact finished before its kill at %s: %v", after, exitDesc(err))
					counts["compact"]++
					if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == exitHalted {
						t.Errorf("the compactor halted (exit 3) with no fault that needs a human:\n%s", out.String())
					}
				case <-time.After(after):
					_ = cmd.Process.Kill()
					err := <-done
					logf("kill -9 compactor after %s: %v", after, exitDesc(err))
					counts["compact kill -9"]++
				}
			} else {
				select {
				case err := <-done:
					logf("compact: %v", exitDesc(err))
					counts["compact"]++
					if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == exitHalted {
						t.Errorf("the compactor halted (exit 3) with no fault that needs a human:\n%s", out.String())
					}
				case <-time.After(5 * time.Minute):
					_ = cmd.Process.Kill()
					<-done
					t.Fatalf("compact did not finish within 5 minutes:\n%s", out.String())
				}
			}
			s.compacted = true
		}
	}
	close(stopProduce)
	wg.Wait()
	logf("faults stopped; producer stopped: %d good and %d bad records acknowledged, %d failed", s.good.Load(), s.bad.Load(), s.failed.Load())
	rig.proxy.setDown(false)
	reap()
	s.waitCaughtUp(5*time.Minute, sinks...)
	for _, p := range sinks {
		if err := p.term(90 * time.Second); err != nil {
			t.Errorf("final SIGTERM of sink pid %d: %v", p.cmd.Process.Pid, err)
		}
	}
	logf("sinks caught up and stopped; last compaction")
	s.compact()
	o := s.verify()
	var names []string
	total := 0
	for k, v := range counts {
		names = append(names, fmt.Sprintf("%s %d", k, v))
		if k != "sink joined" && k != "compact" && k != "sink hung after SIGTERM" && k != "sink exited by itself" {
			total += v
		}
	}
	slices.Sort(names)
	logf("RESULT seed %d duration %s: %d kills and faults (%s); broker pids %v; proxy cut %d and refused %d connections; audit clean; %s",
		seed, time.Since(begin).Round(time.Second), total, strings.Join(names, ", "), rig.broker.pids, rig.proxy.cut.Load(), rig.proxy.refused.Load(), o)
	if total == 0 {
		t.Fatal("no fault was injected")
	}
}

// watchWriter collects a process's output and closes seen once it contains match.
type watchWriter struct {
	mu    sync.Mutex
	b     strings.Builder
	match string
	seen  chan struct{}
	once  sync.Once
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.match) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// exitDesc describes how a process ended.
func exitDesc(err error) string {
	if err == nil {
		return "exit 0"
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return "exit " + strconv.Itoa(ee.ExitCode()) + " (" + ee.String() + ")"
	}
	return err.Error()
}
