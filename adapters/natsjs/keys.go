package natsjs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.KeyStore = (*KeyStore)(nil)

// DefaultKeyBucket is the default of KeyStoreOptions.Bucket.
const DefaultKeyBucket = "KMSBACKUP_KEYS"

const (
	// keyHistory is the number of revisions the key bucket keeps per key.
	// The store never leaves more than the current one (PutWrapped erases
	// the older ones once the new one is acknowledged); the margin is there
	// because the server drops a revision beyond the limit without erasing
	// it, which would leave its bytes on disk if an erase had failed.
	keyHistory = 8
	// maxKeyRefLen bounds a ref, so that its subject (up to three times as
	// long) stays well within the server's max_control_line (refs are
	// prefixed ULIDs of about 30 bytes; the envelope allows 256).
	maxKeyRefLen = 512
	// keyEscape starts an escaped byte in a KV key.
	keyEscape = '='
	// keyCallTimeout bounds one KeyStore call, within the caller's
	// context.
	keyCallTimeout = 2 * requestTimeout
)

const (
	opGetWrapped    = "get wrapped key"
	opPutWrapped    = "put wrapped key"
	opDeleteWrapped = "delete wrapped key"
)

// KeyStoreOptions configures OpenKeyStore. The zero value uses the
// defaults.
type KeyStoreOptions struct {
	// Bucket is the key-value bucket (its stream is KV_<Bucket>); empty
	// means DefaultKeyBucket. Letters, digits, '-' and '_' only.
	Bucket string
	// Replicas is the bucket's replication factor (1 to 5); 0 means 1.
	// With 1, acknowledged writes are as durable as the server's
	// sync_interval makes them (set "always" to fsync before
	// acknowledging).
	Replicas int
}

func (o KeyStoreOptions) withDefaults() KeyStoreOptions {
	o.Bucket, o.Replicas = bucketDefaults(o.Bucket, DefaultKeyBucket, o.Replicas)
	return o
}

// Validate reports every problem of the options (after defaults), joined.
// Each wraps domain.ErrInvalidArgument.
func (o KeyStoreOptions) Validate() error {
	o = o.withDefaults()
	return validateBucket("jetstream key store options", o.Bucket, o.Replicas)
}

// KeyStore keeps the envelope's wrapped data-key records (it implements
// commands.KeyStore) in a JetStream key-value bucket, so that every node of
// a deployment sees the same data keys. One ref is one KV key, and its
// revision is the KV revision (the stream sequence) of its record: every
// write is a compare-and-swap on it. All its methods are safe for
// concurrent use, from any number of nodes.
//
// Removing a record erases it: the bucket's stream allows message deletes
// (unlike a bucket made by `nats kv add`), and the store overwrites every
// message it removes (JetStream's secure delete) instead of only dropping
// it from the index, as a purge or a history limit would. See doc.go for
// what that does and does not reach.
type KeyStore struct {
	c      *Conn
	kv     jsapi.KeyValue
	stream jsapi.Stream
	prefix string // $KV.<bucket>.
}

// OpenKeyStore creates or updates the key bucket on c (idempotent, so every
// node may call it) and returns the store, which uses c until c is closed.
//
// Errors: domain.ErrInvalidArgument for bad options; domain.ErrUnavailable
// when the server cannot be reached or refuses the bucket;
// domain.ErrFailedPrecondition when a bucket of that name exists with
// message deletes denied (made by other tools): erasing records needs them;
// ctx.Err().
func OpenKeyStore(ctx context.Context, c *Conn, opts KeyStoreOptions) (*KeyStore, error) {
	const op = "open key store"
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := c.enter(op); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	// The configuration `nats kv add` would make, but with message deletes
	// allowed (for erasure) and a history margin (see keyHistory).
	cfg := jsapi.StreamConfig{
		Name:              "KV_" + opts.Bucket,
		Description:       "kmsbackup wrapped data keys",
		Subjects:          []string{"$KV." + opts.Bucket + ".>"},
		Storage:           jsapi.FileStorage,
		Replicas:          opts.Replicas,
		Retention:         jsapi.LimitsPolicy,
		Discard:           jsapi.DiscardNew,
		MaxMsgsPerSubject: keyHistory,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Duplicates:        2 * time.Minute,
		AllowRollup:       true,
		// A replica answers direct gets from what it has applied, which
		// may lag the leader: a replicated bucket is read from its leader.
		AllowDirect: opts.Replicas == 1,
		DenyDelete:  false,
		DenyPurge:   false,
	}
	var st jsapi.Stream
	err := created(ctx, func(cctx context.Context) error {
		var err error
		if st, err = c.js.CreateOrUpdateStream(cctx, cfg); err != nil {
			return err
		}
		return waitLeader(cctx, st)
	})
	if err != nil {
		var apiErr *jsapi.APIError
		if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "deny") {
			return nil, &domain.Error{Op: op, Kind: domain.ErrFailedPrecondition, Item: opts.Bucket,
				Msg:  "the key bucket exists and denies message deletes, which erasing keys needs: " + apiErr.Description,
				Hint: "let kmsbackup create the bucket, or name another one"}
		}
		return nil, c.callErr(ctx, op+" "+opts.Bucket, err)
	}
	if got := st.CachedInfo().Config; got.DenyDelete || got.DenyPurge || got.AllowDirect != cfg.AllowDirect {
		return nil, &domain.Error{Op: op, Kind: domain.ErrFailedPrecondition, Item: opts.Bucket,
			Msg: "the server did not allow deletes and purges on the key bucket, or did not set its direct gets as asked"}
	}
	kv, err := c.js.KeyValue(cctx, opts.Bucket)
	if err != nil {
		return nil, c.callErr(ctx, op+" "+opts.Bucket, err)
	}
	return &KeyStore{c: c, kv: kv, stream: st, prefix: "$KV." + opts.Bucket + "."}, nil
}

// Ping checks that the server answers and the key bucket is there, for a
// readiness probe. Errors: domain.ErrUnavailable; ctx.Err().
func (s *KeyStore) Ping(ctx context.Context) error {
	if err := s.c.enter("ping key store"); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := s.stream.Info(cctx); err != nil {
		return s.c.callErr(ctx, "ping key store", err)
	}
	return nil
}

// kvKey encodes ref as a KV key: letters, digits, '-', '_' and '/' stay as
// they are (a ref such as "bkp_01J.../3" reads as itself), every other byte
// becomes '=' and two upper-case hex digits. The encoding is injective and
// yields valid keys only (no '.', so a ref is one subject token).
func kvKey(ref string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(ref) + 8)
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if tokenSafe(c) || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(keyEscape)
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

func checkKeyRef(op, ref string) error {
	switch {
	case ref == "":
		return domain.Invalid(op, "the key ref is empty")
	case len(ref) > maxKeyRefLen:
		return domain.Invalid(op, "the key ref has %d bytes, more than %d", len(ref), maxKeyRefLen)
	}
	return nil
}

// GetWrapped returns ref's record (a copy the caller owns) and its
// revision, the sequence of its message in the bucket's stream; rev is 0
// when there is none. It reads the newest revision with a direct get
// (from the leader on a replicated bucket: see doc.go, Reads).
//
// Errors: domain.ErrInvalidArgument for an empty ref or one over 512
// bytes; domain.ErrUnavailable when the connection is closed or the server
// cannot answer within 20 s. Safe for concurrent use; read-only.
func (s *KeyStore) GetWrapped(ctx context.Context, ref string) ([]byte, uint64, error) {
	if err := checkKeyRef(opGetWrapped, ref); err != nil {
		return nil, 0, err
	}
	if err := s.c.enter(opGetWrapped); err != nil {
		return nil, 0, err
	}
	call, cancel := context.WithTimeout(ctx, keyCallTimeout)
	defer cancel()
	// Only the bucket's leader answers (see doc.go, Reads): while it has
	// none, the get is asked again until one is elected.
	var e jsapi.KeyValueEntry
	err := untilSettled(call, func(timeout time.Duration) (bool, error) {
		actx, cancel := context.WithTimeout(call, timeout)
		defer cancel()
		var err error
		e, err = s.kv.Get(actx, kvKey(ref))
		return electing(call, err), err
	})
	if errors.Is(err, jsapi.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, s.fail(ctx, opGetWrapped+" "+ref, err)
	}
	return e.Value(), e.Revision(), nil
}

// PutWrapped stores wrapped as ref's record if ref's revision is expected:
// with 0 it creates the key (the bucket's create: the key must have no
// record), else it updates it at that revision (the server compares the
// key's last sequence), so of nodes writing one record at once exactly one
// succeeds. It returns the new revision once the server has acknowledged
// the write (with one replica, as durable as the server's sync_interval
// makes it), then erases the previous revisions, so that a replaced record
// leaves no copy behind. Sequences only grow in the stream, so a ref's
// revisions grow over its whole life.
//
// Errors: domain.ErrInvalidArgument for an empty ref, one over 512 bytes,
// or empty wrapped bytes; domain.ErrWrongExpectedRevision when ref's
// revision is another (nothing written); domain.ErrUnavailable when the
// connection is closed, the write fails (the record may then be replaced
// or not), or the previous revision could not be erased (the new record is
// stored; the next PutWrapped or DeleteWrapped erases the old one). Safe
// for concurrent use, from any number of nodes. Not idempotent: repeated
// after a success it fails with ErrWrongExpectedRevision.
func (s *KeyStore) PutWrapped(ctx context.Context, ref string, wrapped []byte, expected uint64) (uint64, error) {
	if err := checkKeyRef(opPutWrapped, ref); err != nil {
		return 0, err
	}
	if len(wrapped) == 0 {
		return 0, domain.Invalid(opPutWrapped, "the wrapped key for %q is empty", ref)
	}
	if err := s.c.enter(opPutWrapped); err != nil {
		return 0, err
	}
	call, cancel := context.WithTimeout(ctx, keyCallTimeout)
	defer cancel()
	key := kvKey(ref)
	var rev uint64
	var err error
	if expected == 0 {
		rev, err = s.kv.Create(call, key, wrapped)
	} else {
		rev, err = s.kv.Update(call, key, wrapped, expected)
	}
	if errors.Is(err, jsapi.ErrKeyExists) || errors.Is(err, jsapi.ErrKeyRevisionMismatch) {
		return 0, &domain.Error{Op: opPutWrapped, Kind: domain.ErrWrongExpectedRevision, Item: ref,
			Msg: fmt.Sprintf("the record is not at revision %d", expected), Hint: "read it again"}
	}
	if err != nil {
		return 0, s.fail(ctx, opPutWrapped+" "+ref, err)
	}
	if err := s.erase(call, s.prefix+key, rev); err != nil {
		return 0, s.fail(ctx, opPutWrapped+" "+ref+": erase the previous revision", err)
	}
	return rev, nil
}

// DeleteWrapped removes ref's record, crypto-shredding everything sealed
// under its data keys: it erases every revision of the key (the server
// overwrites each message in its file, see doc.go), then purges the key's
// subject, so that no message of the key is left, not even a delete marker:
// the KV history of the key is empty. Returns once the server has
// acknowledged it.
//
// Errors: domain.ErrInvalidArgument for an empty ref or one over 512
// bytes; domain.ErrUnavailable when the connection is closed or a delete
// fails (the record may then survive: call again). Safe for concurrent
// use. Idempotent: deleting a missing ref succeeds.
func (s *KeyStore) DeleteWrapped(ctx context.Context, ref string) error {
	if err := checkKeyRef(opDeleteWrapped, ref); err != nil {
		return err
	}
	if err := s.c.enter(opDeleteWrapped); err != nil {
		return err
	}
	call, cancel := context.WithTimeout(ctx, keyCallTimeout)
	defer cancel()
	subj := s.prefix + kvKey(ref)
	if err := s.erase(call, subj, 0); err != nil {
		return s.fail(ctx, opDeleteWrapped+" "+ref, err)
	}
	// Anything the erasure did not see (a put racing with the delete) goes
	// too, and the purge leaves no marker.
	if err := s.stream.Purge(call, jsapi.WithPurgeSubject(subj)); err != nil {
		return s.fail(ctx, opDeleteWrapped+" "+ref, err)
	}
	return nil
}

// fail translates the error of a call made under ctx: ctx's end is
// reported as such, the call's own timeout running out as
// domain.ErrUnavailable.
func (s *KeyStore) fail(ctx context.Context, op string, err error) error {
	return s.c.callErr(ctx, op, err)
}

// erase securely deletes every message of subj whose sequence is below
// before (0: every message), oldest first.
func (s *KeyStore) erase(ctx context.Context, subj string, before uint64) error {
	for seq := uint64(1); ; {
		m, err := s.stream.GetMsg(ctx, seq, jsapi.WithGetMsgSubject(subj))
		if errors.Is(err, jsapi.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if before != 0 && m.Sequence >= before {
			return nil
		}
		if err := s.stream.SecureDeleteMsg(ctx, m.Sequence); err != nil {
			// Gone already (a concurrent erase) is as good as erased.
			if _, gerr := s.stream.GetMsg(ctx, m.Sequence); !errors.Is(gerr, jsapi.ErrMsgNotFound) {
				return fmt.Errorf("erase sequence %d: %w", m.Sequence, err)
			}
		}
		seq = m.Sequence + 1
	}
}

// keyCheckKey is the KV key of the master-key check, beside the records.
// kvKey never makes it: an escaped byte is '=' and two upper-case hex
// digits, and 'k' is not one.
const keyCheckKey = "=keycheck"

// maxKeyCheckLen bounds a key check (the envelope's is 33 bytes).
const maxKeyCheckLen = 1024

const (
	opKeyCheck       = "get key check"
	opCreateKeyCheck = "create key check"
	opAnyWrapped     = "find a wrapped key"
)

// KeyCheck returns the stored master-key check; ok is false when there is
// none.
//
// Errors: domain.ErrUnavailable when the connection is closed or the
// server cannot answer within 20 s. Safe for concurrent use; read-only.
func (s *KeyStore) KeyCheck(ctx context.Context) ([]byte, bool, error) {
	if err := s.c.enter(opKeyCheck); err != nil {
		return nil, false, err
	}
	call, cancel := context.WithTimeout(ctx, keyCallTimeout)
	defer cancel()
	e, err := s.kv.Get(call, keyCheckKey)
	if errors.Is(err, jsapi.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.fail(ctx, opKeyCheck, err)
	}
	return e.Value(), true, nil
}

// CreateKeyCheck stores check as the master-key check unless one is
// stored already, and returns the check stored afterwards. It uses the
// bucket's create (a write expecting no revision), so of nodes racing to
// create it exactly one succeeds and all return its check.
//
// Errors: domain.ErrInvalidArgument for an empty check or one over 1 KiB;
// domain.ErrUnavailable when the connection is closed or the server fails
// (a bucket that does not answer yet, or has no leader yet, is asked
// again for up to 20 s). Safe for concurrent use; idempotent.
func (s *KeyStore) CreateKeyCheck(ctx context.Context, check []byte) ([]byte, error) {
	if len(check) == 0 || len(check) > maxKeyCheckLen {
		return nil, domain.Invalid(opCreateKeyCheck, "the key check must be 1 to %d bytes, not %d", maxKeyCheckLen, len(check))
	}
	if err := s.c.enter(opCreateKeyCheck); err != nil {
		return nil, err
	}
	call, cancel := context.WithTimeout(ctx, keyCallTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		_, err := s.kv.Create(call, keyCheckKey, check)
		if err == nil {
			return bytes.Clone(check), nil
		}
		// On a replicated bucket a racing create still in flight is
		// refused with 10164, which the library reports as "exists"
		// though the check cannot be read yet; a bucket just made on a
		// cluster may not answer yet (no responders), or have no leader
		// yet: ask again.
		var apiErr *jsapi.APIError
		if (errors.As(err, &apiErr) && apiErr.ErrorCode == codeWrongLastSeqConstant) ||
			errors.Is(err, jsapi.ErrNoStreamResponse) || electing(call, err) {
			if err := backoff(call, attempt); err != nil {
				return nil, s.fail(ctx, opCreateKeyCheck, err)
			}
			continue
		}
		if !errors.Is(err, jsapi.ErrKeyExists) {
			return nil, s.fail(ctx, opCreateKeyCheck, err)
		}
		break
	}
	e, err := s.kv.Get(call, keyCheckKey)
	if err != nil {
		return nil, s.fail(ctx, opCreateKeyCheck, err)
	}
	return e.Value(), nil
}

// AnyWrapped returns one stored record (of the oldest message still in
// the bucket) with its ref; ok is false when the bucket holds none. It
// reads the bucket's stream in order by subject, skipping the key check,
// markers and keys that are not refs, and returns the ref's current
// record.
//
// Errors: domain.ErrUnavailable when the connection is closed or the
// server fails. Safe for concurrent use; read-only.
func (s *KeyStore) AnyWrapped(ctx context.Context) (string, []byte, bool, error) {
	if err := s.c.enter(opAnyWrapped); err != nil {
		return "", nil, false, err
	}
	call, cancel := context.WithTimeout(ctx, keyCallTimeout)
	defer cancel()
	for seq := uint64(1); ; {
		m, err := s.stream.GetMsg(call, seq, jsapi.WithGetMsgSubject(s.prefix+">"))
		if errors.Is(err, jsapi.ErrMsgNotFound) {
			return "", nil, false, nil
		}
		if err != nil {
			return "", nil, false, s.fail(ctx, opAnyWrapped, err)
		}
		seq = m.Sequence + 1
		key := strings.TrimPrefix(m.Subject, s.prefix)
		ref, ok := refOfKVKey(key)
		if !ok || key == keyCheckKey || m.Header.Get("KV-Operation") != "" || len(m.Data) == 0 {
			continue
		}
		rec, rev, err := s.GetWrapped(ctx, ref)
		if err != nil {
			return "", nil, false, err
		}
		if rev != 0 {
			return ref, rec, true, nil
		}
	}
}

// refOfKVKey decodes a KV key that kvKey made; ok is false for any other.
func refOfKVKey(key string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c != keyEscape {
			if !tokenSafe(c) && c != '/' {
				return "", false
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(key) {
			return "", false
		}
		v, err := strconv.ParseUint(key[i+1:i+3], 16, 8)
		if err != nil || strings.ToUpper(key[i+1:i+3]) != key[i+1:i+3] {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	ref := b.String()
	return ref, ref != "" && kvKey(ref) == key
}
