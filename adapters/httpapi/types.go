package httpapi

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// The JSON shapes of the API. They carry identifiers, counts and times,
// never key material; secret values and plaintexts travel base64-encoded
// only in the responses that exist to return them.

// ErrorBody is every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names the error class (see errorCodes) and says what to do.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// Account is an account; Token is set only in the response that created it.
type Account struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Token     string    `json:"token,omitempty"`
}

// CreateAccountRequest is POST /v1/accounts.
type CreateAccountRequest struct {
	Name string `json:"name"`
}

// WhoAmI is GET /v1/whoami.
type WhoAmI struct {
	Account string `json:"account,omitempty"`
	Admin   bool   `json:"admin"`
}

// Instance is a KMS instance.
type Instance struct {
	ID          string     `json:"id"`
	Account     string     `json:"account"`
	Region      string     `json:"region"`
	KeyQuota    uint32     `json:"key_quota"`
	SecretQuota uint32     `json:"secret_quota"`
	Keys        uint32     `json:"keys"`
	Secrets     uint32     `json:"secrets"`
	State       string     `json:"state"` // active | released
	CreatedAt   time.Time  `json:"created_at"`
	ReleasedAt  *time.Time `json:"released_at,omitempty"`
}

// CreateInstanceRequest is POST /v1/kms/instances. Omitted quotas take the
// defaults (1000 each).
type CreateInstanceRequest struct {
	Region      string `json:"region"`
	KeyQuota    *int64 `json:"key_quota,omitempty"`
	SecretQuota *int64 `json:"secret_quota,omitempty"`
}

// Version is one version of a key or secret.
type Version struct {
	Version   uint32    `json:"version"`
	KeyID     string    `json:"key_id,omitempty"` // for secrets: the key that encrypts it
	CreatedAt time.Time `json:"created_at"`
}

// Key is a live key, without material.
type Key struct {
	ID             string    `json:"id"`
	Instance       string    `json:"instance"`
	Region         string    `json:"region"`
	Description    string    `json:"description"`
	Spec           string    `json:"spec"`
	PrimaryVersion uint32    `json:"primary_version"`
	Versions       []Version `json:"versions"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// CreateKeyRequest is POST /v1/kms/keys.
type CreateKeyRequest struct {
	Instance    string `json:"instance"`
	Description string `json:"description"`
}

// EncryptRequest is POST /v1/kms/encrypt. Plaintext is base64.
type EncryptRequest struct {
	KeyID     string `json:"key_id"`
	Region    string `json:"region,omitempty"`
	Plaintext []byte `json:"plaintext"`
}

// EncryptResponse carries the ciphertext (kms1:...).
type EncryptResponse struct {
	Ciphertext string `json:"ciphertext"`
	KeyID      string `json:"key_id"`
	Version    uint32 `json:"version"`
}

// DecryptRequest is POST /v1/kms/decrypt.
type DecryptRequest struct {
	Ciphertext string `json:"ciphertext"`
	Region     string `json:"region,omitempty"`
}

// DecryptResponse carries the plaintext (base64).
type DecryptResponse struct {
	Plaintext []byte `json:"plaintext"`
	KeyID     string `json:"key_id"`
	Version   uint32 `json:"version"`
}

// Secret is a live secret's metadata, without its value.
type Secret struct {
	ID             string    `json:"id"` // the secret's name
	Name           string    `json:"name"`
	Instance       string    `json:"instance"`
	Region         string    `json:"region"`
	KeyID          string    `json:"key_id"`
	CurrentVersion uint32    `json:"current_version"`
	Versions       []Version `json:"versions"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// CreateSecretRequest is POST /v1/kms/secrets. Value is base64.
type CreateSecretRequest struct {
	Name     string `json:"name"`
	Instance string `json:"instance"`
	KeyID    string `json:"key_id"`
	Value    []byte `json:"value"`
}

// RotateSecretRequest is POST /v1/kms/secrets/{name}/rotate.
type RotateSecretRequest struct {
	Region string `json:"region,omitempty"`
	Value  []byte `json:"value"`
}

// SecretValue is GET /v1/kms/secrets/{name}/value. Value is base64.
type SecretValue struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version uint32 `json:"version"`
	KeyID   string `json:"key_id"`
	Value   []byte `json:"value"`
}

// List is a page of items; NextPageToken is empty on the last page.
type List[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

func instanceView(in *domain.Instance) Instance {
	v := Instance{ID: string(in.ID), Account: string(in.Account), Region: in.Region, KeyQuota: in.KeyQuota,
		SecretQuota: in.SecretQuota, Keys: in.LiveKeys, Secrets: in.LiveSecrets, State: "active", CreatedAt: in.CreatedAt}
	if in.Released {
		v.State = "released"
		t := in.ReleasedAt
		v.ReleasedAt = &t
	}
	return v
}

func keyView(k *domain.Key) Key {
	v := Key{ID: string(k.ID), Instance: string(k.Instance), Region: k.Region, Description: k.Description,
		Spec: k.Spec, PrimaryVersion: k.Primary().Version, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt}
	for _, kv := range k.Versions {
		v.Versions = append(v.Versions, Version{Version: kv.Version, CreatedAt: kv.CreatedAt})
	}
	return v
}

func secretView(s *domain.Secret) Secret {
	v := Secret{ID: s.Name, Name: s.Name, Instance: string(s.Instance), Region: s.Region, KeyID: string(s.Key),
		CurrentVersion: s.Current().Version, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
	for _, sv := range s.Versions {
		v.Versions = append(v.Versions, Version{Version: sv.Version, KeyID: string(sv.Key), CreatedAt: sv.CreatedAt})
	}
	return v
}

func accountView(a *kmsstate.Account) Account {
	return Account{ID: string(a.ID), Name: a.Name, CreatedAt: a.CreatedAt}
}

func listView[T, V any](p kmsstate.Page[T], view func(T) V) List[V] {
	out := List[V]{Items: make([]V, 0, len(p.Items)), NextPageToken: p.Next}
	for _, it := range p.Items {
		out.Items = append(out.Items, view(it))
	}
	return out
}
