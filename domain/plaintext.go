package domain

import (
	"fmt"
	"log/slog"
)

const redacted = "[REDACTED]"

// Plaintext is key material or a secret value in the clear. It exists only
// in memory, for as short a time as possible, and redacts itself wherever it
// could be printed, logged, or marshalled: String, GoString, every fmt verb,
// JSON, text and slog.
type Plaintext []byte

func (Plaintext) String() string               { return redacted }
func (Plaintext) GoString() string             { return redacted }
func (Plaintext) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (Plaintext) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Plaintext) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (Plaintext) LogValue() slog.Value         { return slog.StringValue(redacted) }

// Wipe overwrites the bytes with zeros. Callers wipe plaintext as soon as
// they no longer need it (best effort: Go may have copied it).
func (p Plaintext) Wipe() {
	for i := range p {
		p[i] = 0
	}
}

// Sealed is ciphertext produced by a Sealer (AES-256-GCM under a data key,
// bound to its associated data). It is safe to store and publish.
type Sealed []byte

// AssociatedData binds a sealed value to where it lives: its account, its
// stream and the ID of the event that carries it. Opening it anywhere else
// fails.
func AssociatedData(account AccountID, stream string, id EventID) []byte {
	return AppendAssociatedData(make([]byte, 0, len(account)+len(stream)+16+2), account, "", stream, id)
}

// AppendAssociatedData appends AssociatedData(account, prefix+stream, id)
// to dst: many sealed values opened one after the other build theirs in
// one buffer.
func AppendAssociatedData(dst []byte, account AccountID, prefix, stream string, id EventID) []byte {
	dst = append(dst, account...)
	dst = append(dst, 0)
	dst = append(dst, prefix...)
	dst = append(dst, stream...)
	dst = append(dst, 0)
	return append(dst, id[:]...)
}
