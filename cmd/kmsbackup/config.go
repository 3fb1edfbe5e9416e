package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/httpedge"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Defaults of the background verification of every backup (the scrub):
// daily, as the full backups are, so that damage is found within a day or
// so; 4 MiB a second, 4.5% of what an unpaced scrub reads on one core,
// with checkpoints taken meanwhile 10 to 21% slower where an unpaced scrub
// makes them 1.3 to 2.5 times slower, and still 362 GB a day: ten months
// of history of 10,000 instances of 10,000 keys (docs/BENCHMARKS.md,
// "Background verification").
// maxRestoreBatch bounds --restore-batch: NATS JetStream takes at most 500
// events in one atomic append, and a batch of n items is 2n+1 (each item's
// event and the claim of its name, commands/names.go, and the batch's
// audit record).
const maxRestoreBatch = 249

// maxNATSReplicas bounds --nats-replicas (JetStream's own limit).
const maxNATSReplicas = 5

const (
	defaultScrubInterval = 24 * time.Hour
	defaultScrubRate     = "4MiB"
)

// The lease on data keys of a node of a shared log (--key-lease): each
// node reads a data key it uses from the shared key store at most once a
// lease, and destroying a data key (reset, release, upload delete) waits a
// lease and an eighth, after which no node uses it.
const (
	defaultKeyLease = 2 * time.Second
	minKeyLease     = 10 * time.Millisecond
	maxKeyLease     = time.Minute
)

// Config is everything `kmsbackup server` is configured with.
type Config struct {
	Dev           bool   // development mode: generated master key, admin token, account "dev"
	DataDir       string // where the Pebble database (and in --dev the master key) live
	Listen        string // host:port of the API
	MasterKeyFile string // --master-key-file
	MasterKeyEnv  string // value of KMSBACKUP_MASTER_KEY
	AdminToken    string // value of KMSBACKUP_ADMIN_TOKEN (or read from --admin-token-file)
	MetricsToken  string // value of KMSBACKUP_METRICS_TOKEN (or read from --metrics-token-file)
	DevAdminToken string // --dev-admin-token
	LogFormat     string // text | json
	LogLevel      string // debug | info | warn | error
	Clock         string // real | manual (manual needs --dev)
	ClockStart    string // RFC 3339 start of a manual clock; empty: now
	MaxUpload     int64  // --max-upload-bytes: the largest backup data file accepted
	EventLog      string // --event-log: "pebble" (embedded), nats://..., esdb://...
	Bus           string // --bus: "gochannel" (in-process) or nats://...
	// NATSReplicas is the replication factor of every JetStream stream the
	// server creates (--nats-replicas, 1 to 5; 0 means 1): the event log's,
	// the key and blob buckets' and the bus's.
	NATSReplicas int
	DevToken     string // --dev-token: with --dev, the account dev's token (several nodes share it)
	// ScrubInterval is the time between the starts of two background
	// verifications of every backup (--scrub-interval); 0 turns them off.
	ScrubInterval time.Duration
	// ScrubRate is how many bytes a second they read (--scrub-rate, such
	// as 4MiB); "0" reads as fast as it can, "" is the default.
	ScrubRate string
	// KeyLease is how long a node of a shared log uses a data key after the
	// shared key store last confirmed it (--key-lease; 0: the default).
	KeyLease time.Duration
	// RestoreBatch is how many items a restore writes in one atomic append
	// (--restore-batch; 0: commands.DefaultRestoreBatchItems).
	RestoreBatch int
	// AcceptLostLogPositions: --accept-lost-log-positions, go on when the
	// embedded log lost acknowledged events at its end.
	AcceptLostLogPositions bool
	// TrustedProxies (--trusted-proxy, repeatable) are the addresses and
	// CIDR prefixes whose X-Forwarded-For and X-Forwarded-Proto are
	// believed: for the client address of the limit on failed
	// authentications, and for the console's HTTPS decision.
	TrustedProxies []string
	// HTTP bounds what a client may hold of the server: timeouts, body
	// deadlines, the cap on unauthenticated requests, the limit on failed
	// authentications (zero fields: the defaults of httpedge; no flags).
	HTTP httpedge.Limits
}

// ScrubBytesPerSecond is ScrubRate in bytes a second (0: unpaced). Call
// it on a validated Config.
func (c Config) ScrubBytesPerSecond() int64 {
	r := c.ScrubRate
	if r == "" {
		r = defaultScrubRate
	}
	n, _ := parseByteRate(r)
	return n
}

// KeyLeaseOrDefault is KeyLease, or its default when it is 0.
func (c Config) KeyLeaseOrDefault() time.Duration {
	if c.KeyLease == 0 {
		return defaultKeyLease
	}
	return c.KeyLease
}

// parseByteRate reads a rate in bytes a second: a whole number with an
// optional unit B, KiB, MiB or GiB (powers of 1024, case-insensitive),
// optionally followed by "/s", such as 4MiB or 512KiB/s.
func parseByteRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "/s")
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"b", 1}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%s is not a rate in bytes a second such as 4MiB, 512KiB or 0", domain.Quote(s))
	}
	return n * mult, nil
}

// LogKind is the kind of event log --event-log names: "pebble", "nats" or
// "esdb".
func (c Config) LogKind() string {
	switch {
	case c.EventLog == "" || c.EventLog == "pebble":
		return "pebble"
	case strings.HasPrefix(c.EventLog, "nats://"), strings.HasPrefix(c.EventLog, "tls://"):
		return "nats"
	case strings.HasPrefix(c.EventLog, "esdb://"), strings.HasPrefix(c.EventLog, "esdb+discover://"),
		strings.HasPrefix(c.EventLog, "kurrentdb://"):
		return "esdb"
	}
	return ""
}

// BusKind is the kind of bus --bus names: "gochannel" or "nats".
func (c Config) BusKind() string {
	switch {
	case c.Bus == "" || c.Bus == "gochannel":
		return "gochannel"
	case strings.HasPrefix(c.Bus, "nats://"), strings.HasPrefix(c.Bus, "tls://"):
		return "nats"
	}
	return ""
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %s must be host:port (e.g. 127.0.0.1:8080)", domain.Quote(c.Listen)))
	}
	if !c.Dev {
		if c.MasterKeyFile == "" && c.MasterKeyEnv == "" {
			errs = append(errs, errors.New("no master key: pass --master-key-file or set KMSBACKUP_MASTER_KEY (or use --dev to generate one)"))
		}
		if c.DevAdminToken != "" {
			errs = append(errs, errors.New("--dev-admin-token needs --dev"))
		}
	}
	if c.DevAdminToken != "" && len(c.DevAdminToken) < 16 {
		errs = append(errs, errors.New("--dev-admin-token must be at least 16 characters"))
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		errs = append(errs, errors.New("the admin token must be at least 16 characters"))
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		errs = append(errs, errors.New("the metrics token must be at least 16 characters"))
	}
	if c.MetricsToken != "" && (c.MetricsToken == c.AdminToken || c.MetricsToken == c.DevAdminToken) {
		errs = append(errs, errors.New("the metrics token must not be the admin token: it is written into Prometheus's configuration"))
	}
	if c.LogKind() == "" {
		errs = append(errs, fmt.Errorf("--event-log %s must be pebble (embedded), nats://HOST:PORT or esdb://HOST:PORT", domain.Quote(c.EventLog)))
	}
	if c.BusKind() == "" {
		errs = append(errs, fmt.Errorf("--bus %s must be gochannel (in-process) or nats://HOST:PORT", domain.Quote(c.Bus)))
	}
	if c.NATSReplicas < 0 || c.NATSReplicas > maxNATSReplicas {
		errs = append(errs, fmt.Errorf("--nats-replicas must be between 1 and %d, got %d", maxNATSReplicas, c.NATSReplicas))
	} else if c.NATSReplicas > 1 && c.LogKind() != "nats" && c.BusKind() != "nats" {
		errs = append(errs, errors.New("--nats-replicas concerns NATS JetStream: pass --event-log nats://... or --bus nats://..."))
	}
	if c.DevToken != "" && !c.Dev {
		errs = append(errs, errors.New("--dev-token needs --dev"))
	}
	if c.Dev && c.LogKind() != "pebble" && c.MasterKeyFile == "" && c.MasterKeyEnv == "" {
		errs = append(errs, errors.New("--dev on a shared --event-log needs the nodes' shared master key: pass --master-key-file or set KMSBACKUP_MASTER_KEY"))
	}
	if c.ScrubInterval < 0 {
		errs = append(errs, errors.New("--scrub-interval must not be negative (0 turns the background verification off)"))
	}
	if _, err := parseByteRate(c.ScrubRate); err != nil && c.ScrubRate != "" {
		errs = append(errs, fmt.Errorf("--scrub-rate: %w", err))
	}
	if c.KeyLease != 0 && (c.KeyLease < minKeyLease || c.KeyLease > maxKeyLease) {
		errs = append(errs, fmt.Errorf("--key-lease must be between %v and %v (0: the default, %v)", minKeyLease, maxKeyLease, defaultKeyLease))
	}
	if c.AcceptLostLogPositions && c.LogKind() != "pebble" {
		errs = append(errs, errors.New("--accept-lost-log-positions concerns the embedded event log only (--event-log pebble)"))
	}
	if c.RestoreBatch < 0 || c.RestoreBatch > maxRestoreBatch {
		errs = append(errs, fmt.Errorf("--restore-batch must be between 1 and %d (0: the default, %d)", maxRestoreBatch, commands.DefaultRestoreBatchItems))
	}
	if _, err := httpedge.ParseTrustedProxies(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("--trusted-proxy: %w", err))
	}
	if c.MaxUpload < 0 {
		errs = append(errs, errors.New("--max-upload-bytes must not be negative (0: the default, 16 GiB)"))
	}
	switch c.Clock {
	case "real", "":
		if c.ClockStart != "" {
			errs = append(errs, errors.New("--clock-start needs --clock manual"))
		}
	case "manual":
		if !c.Dev {
			errs = append(errs, errors.New("--clock manual needs --dev: a manual clock is for development and tests only"))
		}
		if c.ClockStart != "" {
			if _, err := time.Parse(time.RFC3339, c.ClockStart); err != nil {
				errs = append(errs, fmt.Errorf("--clock-start %s must be an RFC 3339 time such as 2026-05-01T00:00:00Z", domain.Quote(c.ClockStart)))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("--clock %s must be real or manual", domain.Quote(c.Clock)))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %s must be text or json", domain.Quote(c.LogFormat)))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %s must be debug, info, warn or error", domain.Quote(c.LogLevel)))
	}
	return errors.Join(errs...)
}
