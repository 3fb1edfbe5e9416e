package httpapi

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/publicevent"
)

func quota(op, name string, v *int64) (uint32, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 1 || *v > domain.MaxQuota {
		return 0, domain.Invalid(op, "%s must be between 1 and %d, got %d", name, domain.MaxQuota, *v)
	}
	return uint32(*v), nil
}

func (s *Server) kmsRoutes(rt *Router) {
	k := s.KMS
	rt.Handle("GET", "/v1/whoami", func(_ http.ResponseWriter, _ *http.Request, c commands.Caller) (any, error) {
		return WhoAmI{Account: string(c.Account), Admin: c.Admin}, nil
	})
	rt.Handle("POST", "/v1/accounts", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req CreateAccountRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		a, token, err := s.Accounts.CreateAccount(r.Context(), c, req.Name)
		if err != nil {
			return nil, err
		}
		v := accountView(a)
		v.Token = token
		return v, nil
	})
	rt.Handle("POST", "/v1/accounts/{id}/token", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		a, token, err := s.Accounts.ReplaceAccountToken(r.Context(), c, domain.AccountID(r.PathValue("id")))
		if err != nil {
			return nil, err
		}
		v := accountView(a)
		v.Token = token
		return v, nil
	})
	rt.Handle("GET", "/v1/accounts", func(_ http.ResponseWriter, _ *http.Request, c commands.Caller) (any, error) {
		as, err := s.Accounts.ListAccounts(c)
		if err != nil {
			return nil, err
		}
		out := List[Account]{Items: []Account{}}
		for _, a := range as {
			out.Items = append(out.Items, accountView(a))
		}
		return out, nil
	})

	rt.Handle("POST", "/v1/kms/instances", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "create instance"
		var req CreateInstanceRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		kq, err := quota(op, "key_quota", req.KeyQuota)
		if err != nil {
			return nil, err
		}
		sq, err := quota(op, "secret_quota", req.SecretQuota)
		if err != nil {
			return nil, err
		}
		in, err := k.CreateInstance(r.Context(), c, commands.CreateInstanceInput{Region: req.Region, KeyQuota: kq, SecretQuota: sq})
		if err != nil {
			return nil, err
		}
		return instanceView(in), nil
	})
	rt.Handle("GET", "/v1/kms/instances", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		size, err := queryInt(r, "page_size", 1000)
		if err != nil {
			return nil, err
		}
		p, err := k.ListInstances(c, r.URL.Query().Get("page_token"), size)
		if err != nil {
			return nil, err
		}
		return listView(p, instanceView), nil
	})
	rt.Handle("GET", "/v1/kms/instances/{id}", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		in, err := k.ShowInstance(c, domain.InstanceID(r.PathValue("id")))
		if err != nil {
			return nil, err
		}
		return instanceView(in), nil
	})
	rt.Handle("POST", "/v1/kms/instances/{id}/release", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		in, err := k.ReleaseInstance(r.Context(), c, domain.InstanceID(r.PathValue("id")))
		if err != nil {
			return nil, err
		}
		return instanceView(in), nil
	})

	rt.Handle("POST", "/v1/kms/keys", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req CreateKeyRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		key, err := k.CreateKey(r.Context(), c, domain.InstanceID(req.Instance), req.Description)
		if err != nil {
			return nil, err
		}
		return keyView(key), nil
	})
	rt.Handle("GET", "/v1/kms/keys", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		size, err := queryInt(r, "page_size", 1000)
		if err != nil {
			return nil, err
		}
		inst := r.URL.Query().Get("instance")
		if inst == "" {
			return nil, domain.Invalid("list keys", "query parameter instance is required")
		}
		p, err := k.ListKeys(c, domain.InstanceID(inst), r.URL.Query().Get("page_token"), size)
		if err != nil {
			return nil, err
		}
		return listView(p, keyView), nil
	})
	rt.Handle("GET", "/v1/kms/keys/{id}", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		key, err := k.ShowKey(c, domain.KeyID(r.PathValue("id")), r.URL.Query().Get("region"))
		if err != nil {
			return nil, err
		}
		return keyView(key), nil
	})
	rt.Handle("POST", "/v1/kms/keys/{id}/rotate", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		key, err := k.RotateKey(r.Context(), c, domain.KeyID(r.PathValue("id")), r.URL.Query().Get("region"))
		if err != nil {
			return nil, err
		}
		return keyView(key), nil
	})
	rt.Handle("DELETE", "/v1/kms/keys/{id}", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		return nil, k.DeleteKey(r.Context(), c, domain.KeyID(r.PathValue("id")), r.URL.Query().Get("region"))
	})
	rt.Handle("POST", "/v1/kms/encrypt", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req EncryptRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		pt := domain.Plaintext(req.Plaintext)
		defer pt.Wipe()
		ct, err := k.Encrypt(r.Context(), c, domain.KeyID(req.KeyID), req.Region, pt)
		if err != nil {
			return nil, err
		}
		return EncryptResponse{Ciphertext: ct.String(), KeyID: string(ct.Key), Version: ct.Version}, nil
	})
	rt.Handle("POST", "/v1/kms/decrypt", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req DecryptRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		pt, ct, err := k.Decrypt(r.Context(), c, req.Ciphertext, req.Region)
		if err != nil {
			return nil, err
		}
		return DecryptResponse{Plaintext: pt, KeyID: string(ct.Key), Version: ct.Version}, nil
	})

	rt.Handle("POST", "/v1/kms/secrets", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req CreateSecretRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		v := domain.Plaintext(req.Value)
		defer v.Wipe()
		sec, err := k.CreateSecret(r.Context(), c, commands.CreateSecretInput{Name: req.Name,
			Instance: domain.InstanceID(req.Instance), Key: domain.KeyID(req.KeyID), Value: v})
		if err != nil {
			return nil, err
		}
		return secretView(sec), nil
	})
	rt.Handle("GET", "/v1/kms/secrets", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		size, err := queryInt(r, "page_size", 1000)
		if err != nil {
			return nil, err
		}
		inst := r.URL.Query().Get("instance")
		if inst == "" {
			return nil, domain.Invalid("list secrets", "query parameter instance is required")
		}
		p, err := k.ListSecrets(c, domain.InstanceID(inst), r.URL.Query().Get("page_token"), size)
		if err != nil {
			return nil, err
		}
		return listView(p, secretView), nil
	})
	rt.Handle("GET", "/v1/kms/secrets/{name}", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		sec, err := k.ShowSecret(c, r.PathValue("name"), r.URL.Query().Get("region"))
		if err != nil {
			return nil, err
		}
		return secretView(sec), nil
	})
	rt.Handle("GET", "/v1/kms/secrets/{name}/value", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		ver, err := queryInt(r, "version", math.MaxInt32)
		if err != nil {
			return nil, err
		}
		sv, err := k.GetSecretValue(r.Context(), c, r.PathValue("name"), r.URL.Query().Get("region"), uint32(ver))
		if err != nil {
			return nil, err
		}
		return SecretValue{ID: sv.Secret.Name, Name: sv.Secret.Name, Version: sv.Version.Version,
			KeyID: string(sv.Version.Key), Value: sv.Value}, nil
	})
	rt.Handle("POST", "/v1/kms/secrets/{name}/rotate", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req RotateSecretRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		v := domain.Plaintext(req.Value)
		defer v.Wipe()
		sec, err := k.RotateSecret(r.Context(), c, r.PathValue("name"), req.Region, v)
		if err != nil {
			return nil, err
		}
		return secretView(sec), nil
	})
	rt.Handle("DELETE", "/v1/kms/secrets/{name}", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		return nil, k.DeleteSecret(r.Context(), c, r.PathValue("name"), r.URL.Query().Get("region"))
	})

	rt.Handle("GET", "/v1/events", func(w http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		from := uint64(0)
		if v := r.URL.Query().Get("from"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, domain.Invalid("tail events", "from must be a log position (a non-negative integer)")
			}
			from = n
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		flush := func() {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		flush()
		enc := json.NewEncoder(w)
		err := s.Events.TailEvents(r.Context(), c, from, func(e publicevent.Event) error {
			if err := enc.Encode(e); err != nil {
				return err
			}
			flush()
			return nil
		})
		if err != nil && r.Context().Err() == nil {
			s.Logger.Warn("event tail ended", "error", err)
		}
		return streamed, nil
	})
}
