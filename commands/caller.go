package commands

import "github.com/kmsbackup/kmsbackup/domain"

// Caller is who makes a request: an account (by its token), or the admin.
// Every use case takes one; objects of other accounts do not exist for it.
type Caller struct {
	Account domain.AccountID // empty for the admin
	Admin   bool
	// System marks work the engine does by itself (scheduled expiries and
	// releases), for audit records; it grants nothing.
	System bool
}

// Sees reports whether the caller may see an object of account a. The admin
// sees every account.
func (c Caller) Sees(a domain.AccountID) bool { return c.Admin || (c.Account != "" && c.Account == a) }

// String names the caller for audit records.
func (c Caller) String() string {
	if c.System {
		return "system"
	}
	if c.Admin {
		return "admin"
	}
	return string(c.Account)
}
