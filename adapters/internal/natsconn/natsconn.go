package natsconn

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	// ConnectTimeout bounds the initial connection.
	ConnectTimeout = 5 * time.Second
	// ReconnectWait is the pause between reconnection attempts.
	ReconnectWait = 250 * time.Millisecond
)

// Dial connects to url under the connection name name, logging
// disconnections, reconnections and asynchronous errors to logger.
func Dial(url, name string, logger *slog.Logger) (*nats.Conn, error) {
	return nats.Connect(url,
		nats.Name(name),
		nats.Timeout(ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(ReconnectWait),
		// Fail publishes while disconnected instead of buffering them: a
		// buffered write could land long after its call gave up on it.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("reconnected to NATS", "server", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			logger.Error("NATS asynchronous error", "err", err)
		}),
	)
}
