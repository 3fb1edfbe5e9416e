// Package esdb is the event log of kmsbackup on an EventStoreDB (or
// KurrentDB) server or cluster, through the official Go client
// (github.com/EventStore/EventStore-Client-Go/v4): it implements
// commands.EventLog for deployments that share one log between several
// engine processes, and beside it, on the same server and client, the two
// other things those processes share: the wrapped data keys (KeyStore, the
// method set of commands.KeyStore) and the backup blobs (Blobs,
// commands.BlobStore). The log never deletes, truncates or rewrites a
// stream; the stores tombstone their own streams to destroy what they
// hold, and nothing else. The package never writes to EventStoreDB's own
// ($) streams, never interprets event payloads, and never puts payloads,
// key records, blob bytes or connection-string passwords into errors or
// logs.
//
// # Mapping
//
//   - Each of our streams is the EventStoreDB stream of the same name, and
//     our revision is its event number. Options.StreamPrefixes (by default
//     accounts, account-, audit-, backup-, kms-, name-, binding- and
//     devclock) says which streams make up the log: Append refuses others,
//     and ReadAll, Head and subscriptions show only their events, never
//     system events (stream or event type starting with "$"), and never the
//     stores' streams (datakey-, blob-, blobs-), whatever the prefixes.
//   - Event ID: the ULID's 16 bytes, read as a UUID. Event type: Type.
//     Data: Data, unchanged, content type binary. Metadata: a small
//     versioned binary envelope with what EventStoreDB does not keep
//     (Schema, OccurredAt, Account, Region, Instance); see codec.go. An event
//     of our streams without that envelope is reported as domain.ErrCorrupt.
//   - Global position: the event's commit position in $all. For events of
//     ordinary appends (implicit transactions, all that the gRPC API writes)
//     it is the event's own log position: distinct for each event and
//     strictly increasing in $all order, but with holes (ContiguousPositions
//     is false). ReadAll(after) reads $all forwards from {after, after} and
//     skips the event at after; Head reads $all backwards to the last event
//     of the log.
//   - Expected revision: the caller's condition is checked against the
//     stream's head as read just before the write, and the write is sent
//     with that exact head (or "no stream") as EventStoreDB's expected
//     revision, so a concurrent writer makes it fail with EventStoreDB's
//     wrong expected version rather than slip in between. See Append.
//   - Multi-stream appends: the client (v4) has no append spanning
//     streams, so AppendMulti appends its parts one after the other, each
//     with its own expected revision, and is not atomic: a part refused
//     after others leaves them written (the conformance suite runs with
//     SequentialMulti). The unique-name claims of commands (names.go) and
//     the bindings of KMS instances to backup instances (bindings.go) put
//     the claim first, so that a lost race for a name or a binding writes
//     nothing, and treat a claim whose item event (or BackupEnabled) never
//     took the revision it names in its stream as dead. What remains:
//     after a claim is written, a crash (or a lost race on the instance's
//     or backup instance's stream) before the other append leaves the name
//     or the KMS instance held until another event takes that revision of
//     that stream; creates of that name, or enables for that KMS instance,
//     are refused until then (already exists), never accepted twice. A
//     release written before its reset or release lost its race frees the
//     binding stream early; the read model's binding, which every enable
//     checks too, keeps the KMS instance bound until the end is recorded.
//   - Errors: wrong expected version becomes domain.ErrWrongExpectedRevision;
//     a deleted stream domain.ErrFailedPrecondition; a request the server
//     refuses as malformed (a batch over its maximum append size)
//     domain.ErrInvalidArgument; everything else (unreachable server, not
//     leader, timeouts, authentication and ACL failures, a closed log)
//     domain.ErrUnavailable.
//
// # Idempotency and its limits
//
// EventStoreDB recognises a retried append only right after the revision it
// expected (or, for "any", in a cache of recent writes). The port promises
// more: an append whose event IDs are all in the stream is a no-op returning
// the original result, whatever it expects. Append therefore looks for the
// batch's IDs among the last Options.RetryWindow events of the stream, and
// right after the revision the call expects, before writing. A retry is not
// recognised, and is written again, when its events are further than
// RetryWindow from the end of the stream and the retry expects another
// revision than the original (typically: "any"). An event ID already used
// in another stream is not detected at all (EventStoreDB has no index by
// event ID). Each append costs at least three round trips: the tail read,
// the write, and a read of the batch for its positions.
//
// # Subscriptions
//
// Subscriptions are catch-up subscriptions to $all with a server-side stream
// prefix filter. The client does not resubscribe after a drop; this package
// does, from the last event delivered, with a backoff of 100 ms doubling to
// 5 s, so consumers see neither a gap nor a duplicate.
//
// # The client's failure modes
//
// The v4 client has failure modes this package works around. A failed node
// discovery stops the client's connection goroutine for good (every later
// call fails with "connection closed"): the log then replaces the client. A
// call may block outside gRPC, where no context reaches, while the client
// rediscovers the server, or forever when it hands a reconnect request to a
// stopped connection goroutine: every call runs in its own goroutine and
// the caller waits for its context, Options.Timeout or Close instead.
// Closing a client under a call makes the call panic (a send on a closed
// channel): that panic, and only that one, is recovered and reported as
// domain.ErrUnavailable. The client sends credentials only over TLS, and its
// "requires leader" header never reaches the server (it is put into an
// incoming context), so Open forces nodePreference=leader: Append reads back
// what it writes. Reading $all needs a user allowed to (in secure mode, an
// admin by default).
//
// # Key store and blob store
//
// The stores write their own streams directly, outside the log's checks
// (they carry no envelope, and are no log events):
//
//   - datakey-<ref>: a data key's wrapped records, one event each
//     (WrappedDataKey); the last one is current.
//   - datakey--check: the master-key check (MasterKeyCheck), its first
//     event, appended once expecting no stream (no ref encodes to an empty
//     name). AnyWrapped finds a record with a catch-up subscription to $all
//     from its start, filtered by the server on "datakey-".
//   - blob-<ref>-<name>: one blob: a header (adapters/internal/blobformat:
//     version, flags, length, chunk size, chunk count, SHA-256; written in
//     version 2, read also in the version 1 of earlier releases), chunks
//     of at most 512 KiB, and, for a blob that does not fit in one append
//     (Options.MaxAppendSize, 1 MiB by default), a commit event once all
//     chunks are written. Blobs up to 1 GiB.
//     OpenBlob reads one about 1 MiB of chunks at a time; DeleteBlob
//     tombstones one (its name is never written again).
//   - blobs-<ref>: the index of a ref's blob names, ended by a seal when
//     the ref is destroyed.
//
// Refs and names (1 to 256 bytes and 1 to 1024 bytes, any bytes but NUL)
// are encoded: ASCII letters, digits, '_' and '.' stay, every other byte is
// '~' and two hex digits, so stream names are unambiguous and contain no
// '/'. Names of refs and blobs, though not their contents, stay visible in
// EventStoreDB's own streams ($streams, and $ce-, $et- with the system
// projections on).
//
// Deletion is a tombstone (a hard delete): the stream reads as deleted at
// once on every node, and can never be written again. Its events stay in
// the server's files until a scavenge rewrites the chunks holding them, so
// crypto-shredding is physically complete only once a scavenge has run on
// every node of the cluster (scavenges are started by an operator or a
// schedule; a scavenge skips the chunk being written; backups of the
// database, and chunks archived to other storage, keep their copies). The
// key records are wrapped under the master key throughout. kmsbackup never
// uses a ref again once destroyed (data keys are per KMS instance or per
// backup generation, blobs per backup generation), but the ports allow it:
// a ref used again goes to a fresh generation of streams, the same names
// followed by -1, -2..., at the cost of a read per destroyed generation on
// lookups. See KeyStore and Blobs.
//
// ReadAll and Head read $all, where the stores' events are too, and drop
// them on the client: the client offers no server-side filter for reads, so
// their cost grows with the blob bytes written since the log's last event
// (pages of $all are cut at 16 MiB so that each call stays within
// Options.Timeout). Subscriptions filter on the server.
//
// # Verification
//
// None of this has been run against a live server: the package was written
// against the client's source (v4.2.0) and the server's (KurrentDB), where
// no server could be started. Its pure parts (envelope, positions, expected
// revisions, error mapping, filters, backoff, connection-string redaction,
// argument checks, stream-name encoding, blob chunking, assembly (also of
// version-1 blob streams) and digests) and the client-replacement path
// against an unreachable address are unit-tested. The event-log, key-store
// and blob-store conformance suites, a concurrent retry race, a
// resubscription test, and tests of tombstones, generations, unfinished
// blobs, version-1 blobs and interrupted destructions run only when KMSBACKUP_ESDB_URL names a server, e.g.
// esdb://localhost:2113?tls=false for
// "docker run -p 2113:2113 eventstore/eventstore --insecure --run-projections=All".
// It assumes EventStoreDB 22.6 or later (which reports $all positions on
// stream reads) and the default chunk size, 256 MiB (Options.ChunkSize),
// which ReadAll uses to find a valid place to start from when asked for a
// position that is no event's.
package esdb
