package httpapi

import (
	"net/http"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// accountRoutes serves the caller and the accounts (the admin's).
func (s *Server) accountRoutes(rt *Router) {
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
}
