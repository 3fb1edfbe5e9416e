package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/commands"
)

func newServerCmd() *cobra.Command {
	cfg := Config{}
	var adminTokenFile, metricsTokenFile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the kmsbackup server (API, software KMS, event log)",
		Long: `Run the kmsbackup server: the HTTP API under /v1/, the built-in software KMS,
and the embedded event log (Pebble) under --data-dir.

Production needs a master key (--master-key-file, or KMSBACKUP_MASTER_KEY: base64
of 32 random bytes, e.g. from 'head -c32 /dev/urandom | base64') and an admin
token (--admin-token-file, or KMSBACKUP_ADMIN_TOKEN) for creating accounts.

--dev generates a master key into the data directory, prints an admin token
(fixed with --dev-admin-token), and creates the account "dev", printing its token.

Every --scrub-interval the server verifies every backup in the background (the
chain of checkpoints, every checksum, every key version opens), reading at most
--scrub-rate bytes a second, and exports the result on /metrics
(kmsbackup_verify_*). /metrics names no account and no backup instance unless
the request carries the metrics token (--metrics-token-file, or
KMSBACKUP_METRICS_TOKEN) or the admin token as a bearer token.

Beyond one machine, several server processes share one event log
(--event-log nats://... or esdb://...) and, optionally, one bus (--bus
nats://...): any node serves the API, every scheduled backup is taken once
(claimed by an expected-revision append), and each node's --data-dir holds only
projections rebuildable from the log. All nodes need the same master key. A
NATS cluster is named by a comma-separated list of its servers' URLs; with
--nats-replicas 3 every stream is kept on 3 of them, so that the loss of one
loses nothing acknowledged.

Before writing anything, a start checks the data directory and refuses, with
one message and its own exit code, when a file of the embedded store is
damaged (10), the master key is not the one the data was written with (11),
or acknowledged events are missing from the event log (12). Damaged read
models are rebuilt from the log (logged as a warning).`,
		Example: `  kmsbackup server --dev
  kmsbackup server --data-dir /var/lib/kmsbackup --listen 0.0.0.0:8080 --master-key-file /etc/kmsbackup/master.key
  kmsbackup server --event-log nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222 --nats-replicas 3 \
    --bus nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222 --master-key-file /etc/kmsbackup/master.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.MasterKeyEnv = os.Getenv("KMSBACKUP_MASTER_KEY")
			var err error
			if cfg.AdminToken, err = tokenFrom("--admin-token-file", adminTokenFile, "KMSBACKUP_ADMIN_TOKEN"); err != nil {
				return err
			}
			if cfg.MetricsToken, err = tokenFrom("--metrics-token-file", metricsTokenFile, "KMSBACKUP_METRICS_TOKEN"); err != nil {
				return err
			}
			logger := newLogger(cfg)
			stderr := cmd.ErrOrStderr()
			m := &Main{Config: cfg, Stdout: cmd.OutOrStdout(), Logger: logger,
				// A store that cannot go on stops the process with one
				// message, as a refused start does.
				Fatal: func(err error) {
					fmt.Fprintln(stderr, "kmsbackup: "+err.Error())
					os.Exit(fatalExitCode(err))
				}}
			if err := m.Run(cmd.Context()); err != nil {
				return err
			}
			<-cmd.Context().Done()
			logger.Info("shutting down")
			return m.Close()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&cfg.Dev, "dev", false, "development mode: generated master key, printed admin token, account dev")
	f.StringVar(&cfg.DataDir, "data-dir", envOr("KMSBACKUP_DATA_DIR", "./data"), "data directory (env KMSBACKUP_DATA_DIR)")
	f.StringVar(&cfg.Listen, "listen", envOr("KMSBACKUP_LISTEN", "127.0.0.1:8080"), "address to serve the API on (env KMSBACKUP_LISTEN)")
	f.StringVar(&cfg.MasterKeyFile, "master-key-file", "", "file holding the base64 master key (mode 0600)")
	f.StringVar(&adminTokenFile, "admin-token-file", "", "file holding the admin token (else env KMSBACKUP_ADMIN_TOKEN)")
	f.StringVar(&metricsTokenFile, "metrics-token-file", "",
		"file holding the metrics token (else env KMSBACKUP_METRICS_TOKEN): with it, /metrics adds the series of each backup instance and account")
	f.StringVar(&cfg.DevAdminToken, "dev-admin-token", "", "with --dev: use this admin token instead of a random one")
	f.StringVar(&cfg.Clock, "clock", "real", "clock: real, or manual (with --dev: moves only with 'kmsbackup dev clock advance')")
	f.StringVar(&cfg.ClockStart, "clock-start", "", "with --clock manual: the clock's start (RFC 3339; default now)")
	f.Int64Var(&cfg.MaxUpload, "max-upload-bytes", 0, "the largest backup data file an upload may send (0: 16 GiB)")
	f.StringVar(&cfg.EventLog, "event-log", envOr("KMSBACKUP_EVENT_LOG", "pebble"),
		"the event log: pebble (embedded in --data-dir), nats://HOST:PORT (NATS JetStream) or esdb://HOST:PORT (EventStoreDB/KurrentDB), shared by every node (env KMSBACKUP_EVENT_LOG)")
	f.StringVar(&cfg.Bus, "bus", envOr("KMSBACKUP_BUS", "gochannel"),
		"the bus of the public event stream and of KMS event ingestion: gochannel (in-process) or nats://HOST:PORT (env KMSBACKUP_BUS)")
	f.IntVar(&cfg.NATSReplicas, "nats-replicas", 1,
		fmt.Sprintf("replicas of every JetStream stream the server creates (event log, data keys, blobs, bus): 1 to %d; 3 on a cluster of 3 servers keeps every acknowledged write through the loss of one", maxNATSReplicas))
	f.StringVar(&cfg.DevToken, "dev-token", "", "with --dev: the token of account dev (nodes of one deployment share it)")
	f.DurationVar(&cfg.KeyLease, "key-lease", defaultKeyLease,
		fmt.Sprintf("with a shared --event-log: how long a node uses a data key after the shared key store last confirmed it (%v to %v); destroying a data key waits this long and an eighth, after which no node uses it", minKeyLease, maxKeyLease))
	f.DurationVar(&cfg.ScrubInterval, "scrub-interval", defaultScrubInterval,
		"time between two background verifications of every backup (chain, checksums, key versions); 0 turns them off")
	f.StringVar(&cfg.ScrubRate, "scrub-rate", defaultScrubRate,
		"bytes a second the background verification reads (such as 4MiB or 512KiB; 0: as fast as it can)")
	f.IntVar(&cfg.RestoreBatch, "restore-batch", 0,
		fmt.Sprintf("items a restore writes in one atomic append to the target's stream (1 to %d; 0: %d)", maxRestoreBatch, commands.DefaultRestoreBatchItems))
	f.BoolVar(&cfg.AcceptLostLogPositions, "accept-lost-log-positions", false,
		"start even though acknowledged events are missing from the end of the embedded event log (exit code 12 names them): they are gone for good, the read models are rebuilt, and it is logged as an error. Restoring the data directory from a copy is the better way out")
	f.StringSliceVar(&cfg.TrustedProxies, "trusted-proxy", envList("KMSBACKUP_TRUSTED_PROXIES"),
		"an address or CIDR prefix of a reverse proxy whose X-Forwarded-For and X-Forwarded-Proto are believed (repeatable, or comma-separated; env KMSBACKUP_TRUSTED_PROXIES); from any other peer they are ignored")
	f.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// tokenFrom reads a token from the file a flag names, else from an
// environment variable ("" when neither is set).
func tokenFrom(flag, file, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", flag, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// envList is a comma-separated environment variable as a list (nil when
// unset).
func envList(name string) []string {
	if v := os.Getenv(name); v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

func newLogger(cfg Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
