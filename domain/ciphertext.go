package domain

import (
	"encoding/base64"
	"strings"
)

// Ciphertext is the data-plane ciphertext of the software KMS. It names the
// key and the version that sealed it, so it decrypts after any number of
// rotations, and after a restore that kept the key ID. Its text form is
// "kms1:" followed by URL-safe base64 of:
//
//	keyIDLen(1) keyID version(4, big-endian) sealed(nonce || ciphertext || tag)
type Ciphertext struct {
	Key     KeyID
	Version uint32
	Sealed  []byte
}

const ciphertextPrefix = "kms1:"

// CiphertextAAD is the associated data of a data-plane ciphertext: the key
// ID and version, plus the caller's context (a secret's name and version).
func CiphertextAAD(key KeyID, version uint32, context string) []byte {
	b := make([]byte, 0, len(key)+len(context)+6)
	b = append(b, key...)
	b = append(b, 0, byte(version>>24), byte(version>>16), byte(version>>8), byte(version), 0)
	return append(b, context...)
}

// String encodes the ciphertext in its text form.
func (c Ciphertext) String() string {
	b := make([]byte, 0, 1+len(c.Key)+4+len(c.Sealed))
	b = append(b, byte(len(c.Key)))
	b = append(b, c.Key...)
	b = append(b, byte(c.Version>>24), byte(c.Version>>16), byte(c.Version>>8), byte(c.Version))
	b = append(b, c.Sealed...)
	return ciphertextPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseCiphertext decodes the text form. It checks the shape, not the seal.
func ParseCiphertext(s string) (Ciphertext, error) {
	const op = "parse ciphertext"
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, ciphertextPrefix)
	if !ok {
		return Ciphertext{}, Invalid(op, "ciphertext must start with %q", ciphertextPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return Ciphertext{}, Invalid(op, "ciphertext is not valid base64")
	}
	if len(b) < 1 || len(b) < 1+int(b[0])+4+28 {
		return Ciphertext{}, Invalid(op, "ciphertext is too short")
	}
	n := int(b[0])
	id, err := ParseKeyID(string(b[1 : 1+n]))
	if err != nil {
		return Ciphertext{}, Invalid(op, "ciphertext names no valid key")
	}
	v := uint32(b[1+n])<<24 | uint32(b[2+n])<<16 | uint32(b[3+n])<<8 | uint32(b[4+n])
	if v == 0 {
		return Ciphertext{}, Invalid(op, "ciphertext names key version 0")
	}
	return Ciphertext{Key: id, Version: v, Sealed: b[5+n:]}, nil
}
