// Package natsjs is the event log (commands.EventLog) on a NATS
// JetStream stream, for deployments that run beyond one machine and already
// operate NATS. It never deletes, purges or expires a message, never
// creates a durable consumer, and never logs event data.
//
// # Layout
//
// One JetStream stream (Options.Stream, default KMSBACKUP_LOG; file
// storage, limits retention with no limit, DiscardNew, deletes and purges
// denied, direct get and atomic publish allowed) holds the whole log on the
// subjects <prefix>.> (Options.SubjectPrefix, default kmsbackup.log):
//
//   - the events of stream S on <prefix>.e.<token(S)>, where the token
//     keeps letters, digits, '-' and '_' and writes every other byte as '~'
//     and two hex digits (so "kms-kms_01H..." is its own token, and '.',
//     '*', '>' or spaces can never split or widen a subject);
//   - one event-ID marker per event on <prefix>.id.<event ID>.
//
// An event's position is the JetStream sequence of its message, and its
// revision (0-based in its stream) is stored in the message with every
// other envelope field in a compact versioned binary payload (codec.go).
// Positions strictly increase but are not contiguous: the markers take
// sequences too.
//
// # Appends are atomic batches
//
// Append publishes one JetStream atomic batch (nats-server 2.12 or later):
// first the batch's markers, each expecting its subject to be empty
// (Nats-Expected-Last-Subject-Sequence: 0), then its events, the first
// expecting the stream's subject to end at the sequence of the stream's
// last event (0 for a new stream). The server commits all of it or none,
// with consecutive sequences, so:
//
//   - a batch of events is atomic and its positions follow from the
//     sequence the server acknowledges;
//   - optimistic concurrency is the server's: a lost race is refused
//     (JetStream error 10071, or 10164 on replicated streams) and becomes
//     domain.ErrWrongExpectedRevision;
//   - an event ID can be written once in the whole log, forever, and the
//     marker that says so is committed with its event: there is no window
//     between writing an event and indexing its ID in which a crash could
//     let a retry write it twice. Nats-Msg-Id de-duplication is not used:
//     it only covers the stream's duplicate window, which the markers make
//     redundant.
//
// When the server refuses a batch, Append looks the batch's markers up (one
// direct get): all of them in this stream is a retry, answered with the
// original result whatever the expected revision; some, or any in another
// stream, is domain.ErrInvalidArgument; none means the stream moved, and the
// expected revision is checked again against its new head. Appends to one
// stream through one Log are serialised and remember the stream's head, so
// an uncontended append is one round trip. Appends to different streams
// that queue while a batch commits are published together as one atomic
// batch (group commit), each with its own expectation and markers; a group
// the server refuses cannot say which member was at fault, so each member
// is then published alone.
//
// The other way, one message per batch holding all its events, commits
// faster on a single server but leaves the event-ID index outside the
// commit (a separate key-value bucket written after the append): a crash in
// between, or two racing appends of one ID to two streams, would break the
// port's idempotency promise. Atomic batches cost more: a single server
// stages each batch in a file store of its own before committing it
// (measured here: 9 to 15 ms per batch however small, against 0.6 ms for
// one fsynced message; group commit makes up for it under concurrency),
// while replicated streams stage it in memory.
// MaxBatchEvents (500) follows from the server's default of 1000 messages
// per batch; an event must fit in the server's max_payload less 512 bytes.
//
// # Reads and subscriptions
//
// ReadAll, ReadStream and Head use direct gets (no consumer), which the
// server isolates from batch commits: a read sees all of a batch or none of
// it. ReadStream finds the sequence of its first revision by a binary
// search over sequences (revisions of a subject are consecutive), then
// reads the subject in batches. Subscribe uses an ordered consumer
// (ephemeral, in memory, no acknowledgements) from the sequence after the
// given position, which the client recreates where it stopped after a
// disconnection or a server restart.
//
// # Durability
//
// Append returns once the server has acknowledged the batch. On a
// one-replica stream that is as durable as the server's sync_interval makes
// it: run such a server with sync_interval: always, or use three replicas
// (Options.Replicas).
package natsjs
