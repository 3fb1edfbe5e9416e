package httpapi

import (
	"net/http"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
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

// instanceRoutes serves KMS instances.
func (s *Server) instanceRoutes(rt *Router) {
	k := s.KMS
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
}
