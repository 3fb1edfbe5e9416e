package kmsstate

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Key layout. Every key starts with "kms/" (KMS state) or "acct/"
// (accounts); components are separated by 0x00, which no ID, region or name
// may contain.
//
//	kms/i/<instance>                          instance record
//	kms/ai/<account>\0<instance>              the account's instances
//	kms/k/<instance>\0<key>                   key record
//	kms/gk/<account>\0<key>\0<region>         where a key ID lives (uniqueness, decrypt)
//	kms/s/<instance>\0<name>                  secret record
//	kms/gs/<account>\0<name>\0<region>        where a secret name lives
//	kms/ku/<instance>\0<key>\0<name>          secrets encrypted under a key
//	acct/a/<account>                          account record
//	acct/n/<name>                             account by name
//	acct/t/<sha256(token)>                    account by token hash
//	acct/s/<sha256(session reference)>        console session record
//	acct/as/<account>\0<sha256(reference)>    the account's sessions (value: expiry)
func k(parts ...string) []byte { return projections.Key(parts...) }

// prefix is the prefix of the children of k(parts...).
func prefix(parts ...string) []byte { return projections.Prefix(parts...) }

func instanceKey(id domain.InstanceID) []byte { return k("kms/i/", string(id)) }
func accountInstanceKey(a domain.AccountID, id domain.InstanceID) []byte {
	return k("kms/ai/", string(a), string(id))
}
func keyKey(in domain.InstanceID, id domain.KeyID) []byte { return k("kms/k/", string(in), string(id)) }
func keyLocKey(a domain.AccountID, id domain.KeyID, region string) []byte {
	return k("kms/gk/", string(a), string(id), region)
}
func secretKey(in domain.InstanceID, name string) []byte { return k("kms/s/", string(in), name) }
func secretLocKey(a domain.AccountID, name, region string) []byte {
	return k("kms/gs/", string(a), name, region)
}
func keyUseKey(in domain.InstanceID, key domain.KeyID, name string) []byte {
	return k("kms/ku/", string(in), string(key), name)
}
func accountKey(id domain.AccountID) []byte { return k("acct/a/", string(id)) }
func accountNameKey(name string) []byte     { return k("acct/n/", name) }
func tokenKey(hash [32]byte) []byte         { return k("acct/t/", string(hash[:])) }
