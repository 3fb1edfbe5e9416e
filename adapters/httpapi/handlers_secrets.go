package httpapi

import (
	"math"
	"net/http"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// secretRoutes serves secrets.
func (s *Server) secretRoutes(rt *Router) {
	k := s.KMS
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
}
