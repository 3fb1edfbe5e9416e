package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is everything `kmsbackup server` is configured with.
type Config struct {
	Dev           bool   // development mode: generated master key, admin token, account "dev"
	DataDir       string // where the Pebble database (and in --dev the master key) live
	Listen        string // host:port of the API
	MasterKeyFile string // --master-key-file
	MasterKeyEnv  string // value of KMSBACKUP_MASTER_KEY
	AdminToken    string // value of KMSBACKUP_ADMIN_TOKEN (or read from --admin-token-file)
	DevAdminToken string // --dev-admin-token
	LogFormat     string // text | json
	LogLevel      string // debug | info | warn | error
	Clock         string // real | manual (manual needs --dev)
	ClockStart    string // RFC 3339 start of a manual clock; empty: now
	MaxUpload     int64  // --max-upload-bytes: the largest backup data file accepted
	EventLog      string // --event-log: "pebble" (embedded), nats://..., esdb://...
	Bus           string // --bus: "gochannel" (in-process) or nats://...
	DevToken      string // --dev-token: with --dev, the account dev's token (several nodes share it)
	// AcceptLostLogPositions: --accept-lost-log-positions, go on when the
	// embedded log lost acknowledged events at its end.
	AcceptLostLogPositions bool
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
		errs = append(errs, fmt.Errorf("--listen %q must be host:port (e.g. 127.0.0.1:8080)", c.Listen))
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
	if c.LogKind() == "" {
		errs = append(errs, fmt.Errorf("--event-log %q must be pebble (embedded), nats://HOST:PORT or esdb://HOST:PORT", c.EventLog))
	}
	if c.BusKind() == "" {
		errs = append(errs, fmt.Errorf("--bus %q must be gochannel (in-process) or nats://HOST:PORT", c.Bus))
	}
	if c.DevToken != "" && !c.Dev {
		errs = append(errs, errors.New("--dev-token needs --dev"))
	}
	if c.Dev && c.LogKind() != "pebble" && c.MasterKeyFile == "" && c.MasterKeyEnv == "" {
		errs = append(errs, errors.New("--dev on a shared --event-log needs the nodes' shared master key: pass --master-key-file or set KMSBACKUP_MASTER_KEY"))
	}
	if c.AcceptLostLogPositions && c.LogKind() != "pebble" {
		errs = append(errs, errors.New("--accept-lost-log-positions concerns the embedded event log only (--event-log pebble)"))
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
				errs = append(errs, fmt.Errorf("--clock-start %q must be an RFC 3339 time such as 2026-05-01T00:00:00Z", c.ClockStart))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("--clock %q must be real or manual", c.Clock))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q must be text or json", c.LogFormat))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q must be debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}
