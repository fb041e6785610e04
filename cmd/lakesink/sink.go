package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/lakesink/lakesink/decode/registry"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/sink"
)

func loadConfig(fs *flag.FlagSet, args []string) (*config.Config, error) {
	path := fs.String("c", "", "config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *path == "" {
		return nil, &configError{errors.New("-c FILE is required")}
	}
	cfg, err := config.Load(*path, os.Getenv)
	if err != nil {
		return nil, &configError{err}
	}
	// columns_from: registry: every command sees the columns derived from the subject.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := registry.Derive(ctx, cfg); err != nil {
		return nil, fmt.Errorf("%s: columns_from: registry: %w", *path, err)
	}
	return cfg, nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	out, err := cfg.Redacted()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# config is valid; effective settings (defaults filled, secrets redacted):\n%s", out)
	return nil
}

// openStore opens the lake's object store from the config.
// onRetry and onStall, if set, count retried S3 requests and stalled attempts.
func openStore(ctx context.Context, cfg *config.Config, onRetry func(op string), onStall func()) (store.Store, error) {
	if cfg.LocalDir != "" {
		return store.NewLocal(cfg.LocalDir)
	}
	s := cfg.S3
	sse := s.SSE
	if sse == "none" {
		sse = ""
	}
	return store.NewS3(ctx, store.S3Config{
		Bucket: s.Bucket, Prefix: s.Prefix, Region: s.Region, Endpoint: s.Endpoint, PathStyle: s.PathStyle,
		SSE: sse, KMSKeyID: s.KMSKeyID, PartSize: int64(s.PartSize), Concurrency: s.UploadConcurrency,
		MaxAttempts: s.MaxAttempts, OnRetry: onRetry, RequestTimeout: s.RequestTimeout, OnStall: onStall,
	})
}

func cmdSink(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run here, written at exit (go tool pprof)")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	log := newLogger(stderr, cfg.Log.Level)
	setMemoryLimit(int64(cfg.Flush.MemoryBudget), log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := sink.NewMetrics(reg)
	st, err := openStore(ctx, cfg, func(op string) { m.S3Retries.WithLabelValues(op).Inc() }, m.S3Stalls.Inc)
	if err != nil {
		return err
	}
	sk, err := sink.New(cfg, st, m, log)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = sk.CheckTopics(cctx)
	cancel()
	if err != nil {
		return &configError{err}
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return &configError{fmt.Errorf("http.listen: %w", err)}
	}
	h := httpHandler(reg, sk.Ready)
	if os.Getenv("LAKESINK_PPROF") == "1" {
		h = withPprof(h)
		log.Info("serving /debug/pprof/ (LAKESINK_PPROF=1)", "listen", ln.Addr().String())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Info("lakesink sink starting", "listen", ln.Addr().String(), "tables", len(cfg.Tables), "group", cfg.Kafka.Group)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer func() {
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
		}()
		return sk.Run(gctx)
	})
	return g.Wait()
}

// httpHandler serves /metrics, /healthz (alive) and /readyz (joined and store reachable).
func httpHandler(reg *prometheus.Registry, ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}

// withPprof adds Go's profiling endpoints under /debug/pprof/ to h. It is opt-in
// (LAKESINK_PPROF=1): profiles reveal internals and cost CPU, so the listener that
// serves /metrics only carries them when an operator asks.
func withPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// setMemoryLimit gives the Go runtime a soft limit equal to the memory budget
// (unless GOMEMLIMIT is set): the budget counts the buffers, the uploads in
// flight, the fetches, the rest of the heap and room for garbage between
// collections (sink/memory.go), so garbage collection keeps Go's memory within it.
// The binary's code and data pages, which the limit does not count, come on top
// (~64 MiB resident, docs/performance.md).
func setMemoryLimit(budget int64, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := budget
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "bytes", limit)
}
