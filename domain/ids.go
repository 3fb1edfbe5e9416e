package domain

import (
	"regexp"
	"strings"

	"github.com/oklog/ulid/v2"
)

// Identifiers are a readable prefix followed by a ULID. The domain never
// draws randomness: callers pass the ULID in.
type (
	AccountID  string // acct_<ulid>
	InstanceID string // kms_<ulid>
	KeyID      string // key_<ulid>
	BackupID   string // bkp_<ulid>
)

// EventID identifies an event. It is also the idempotency key of an append.
type EventID = ulid.ULID

// ID prefixes.
const (
	AccountPrefix  = "acct_"
	InstancePrefix = "kms_"
	KeyPrefix      = "key_"
	BackupPrefix   = "bkp_"
)

// NewAccountID makes an account ID from a ULID.
func NewAccountID(u ulid.ULID) AccountID { return AccountID(AccountPrefix + u.String()) }

// NewInstanceID makes a KMS instance ID from a ULID.
func NewInstanceID(u ulid.ULID) InstanceID { return InstanceID(InstancePrefix + u.String()) }

// NewKeyID makes a key ID from a ULID.
func NewKeyID(u ulid.ULID) KeyID { return KeyID(KeyPrefix + u.String()) }

// NewBackupID makes a backup instance ID from a ULID.
func NewBackupID(u ulid.ULID) BackupID { return BackupID(BackupPrefix + u.String()) }

func parsePrefixed(op, prefix, what, s string) error {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return Invalid(op, "%s %s must start with %q", what, Quote(s), prefix)
	}
	if _, err := ulid.ParseStrict(rest); err != nil {
		return Invalid(op, "%s %s is not a valid ID", what, Quote(s))
	}
	return nil
}

// ParseAccountID validates an account ID.
func ParseAccountID(s string) (AccountID, error) {
	return AccountID(s), parsePrefixed("parse account ID", AccountPrefix, "account ID", s)
}

// ParseInstanceID validates a KMS instance ID.
func ParseInstanceID(s string) (InstanceID, error) {
	return InstanceID(s), parsePrefixed("parse instance ID", InstancePrefix, "KMS instance ID", s)
}

// ParseKeyID validates a key ID.
func ParseKeyID(s string) (KeyID, error) {
	return KeyID(s), parsePrefixed("parse key ID", KeyPrefix, "key ID", s)
}

// ParseBackupID validates a backup instance ID.
func ParseBackupID(s string) (BackupID, error) {
	return BackupID(s), parsePrefixed("parse backup ID", BackupPrefix, "backup instance ID", s)
}

var (
	regionRe      = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}[a-z0-9]$`)
	secretNameRe  = regexp.MustCompile(`^[A-Za-z0-9_+=.@-]{1,192}$`)
	accountNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// ValidateRegion checks a region name such as "cn-hangzhou".
func ValidateRegion(r string) error {
	if !regionRe.MatchString(r) {
		return Invalid("validate region", "region %s must be 2-64 lower-case letters, digits and dashes, e.g. cn-hangzhou", Quote(r))
	}
	return nil
}

// ValidateSecretName checks a secret name: 1-192 characters of letters,
// digits and _ + = . @ -.
func ValidateSecretName(n string) error {
	if !secretNameRe.MatchString(n) {
		return Invalid("validate secret name", "secret name %s must be 1-192 letters, digits or _ + = . @ -", Quote(n))
	}
	return nil
}

// ValidateAccountName checks an account name: lower-case letters, digits,
// '_' and '-', at most 63 characters.
func ValidateAccountName(n string) error {
	if !accountNameRe.MatchString(n) {
		return Invalid("validate account name", "account name %s must be 1-63 lower-case letters, digits, _ or -, starting with a letter or digit", Quote(n))
	}
	return nil
}

// Stream names follow EventStoreDB conventions: category-id.
const (
	AccountsStream  = "accounts"
	KMSStreamPrefix = "kms-"
)

// KMSStream is the stream of one KMS instance's key and secret events.
func KMSStream(id InstanceID) string { return KMSStreamPrefix + string(id) }

// AccountStream is the stream of one account's lifecycle events.
func AccountStream(id AccountID) string { return "account-" + string(id) }
