package bus

import (
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// DefaultGoChannelBuffer is the per-subscriber channel buffer of the
// embedded pub/sub.
const DefaultGoChannelBuffer = 256

// NewLogger adapts a slog logger for Watermill. Watermill's info messages
// are per message ("No subscribers to send message") and are logged at
// debug level; its errors stay errors. A nil logger discards everything.
func NewLogger(logger *slog.Logger) watermill.LoggerAdapter {
	if logger == nil {
		return watermill.NopLogger{}
	}
	return watermill.NewSlogLoggerWithLevelMapping(logger, map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	})
}

// NewGoChannel returns the embedded, in-process pub/sub: both the
// message.Publisher for NewPublisher and the message.Subscriber for
// NewSubscriber (they must be the same value). It keeps nothing: a message
// published while nobody subscribes is gone, so run commands.PublishEvents
// with FromHead over it. Publishing never waits for subscribers. The caller
// closes it after the publisher and subscribers are done.
func NewGoChannel(logger *slog.Logger) *gochannel.GoChannel {
	return gochannel.NewGoChannel(gochannel.Config{
		OutputChannelBuffer:            DefaultGoChannelBuffer,
		Persistent:                     false,
		BlockPublishUntilSubscriberAck: false,
	}, NewLogger(logger))
}
