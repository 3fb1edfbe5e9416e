package httpapi

import (
	"net/http"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// keyRoutes serves keys, and encryption and decryption under them.
func (s *Server) keyRoutes(rt *Router) {
	k := s.KMS
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
}
