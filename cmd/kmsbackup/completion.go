package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Shell completion of IDs: a positional argument or flag that names an
// instance, a key, a secret, a backup instance or an upload completes with
// the IDs the server lists for the account (--addr and --token, or
// KMSBACKUP_ADDR and KMSBACKUP_TOKEN, as for the command itself), each with
// a short description. It is silent when the server cannot be asked (no
// token, not reachable, an error): the shell then offers nothing, never
// files.

// idKind is what an argument or a flag names.
type idKind int

const (
	idNone           idKind = iota
	idInstance              // a KMS instance
	idKey                   // a key (of --instance when the command has it set)
	idSecret                // a secret's name (likewise)
	idBackupInstance        // a backup instance, not an upload
	idBackup                // a backup instance or an upload: whatever holds backup data
	idUpload                // an upload
)

// idArgs says what completes where: by command (its path below kmsbackup),
// the kind of its positional argument and of its ID flags. A test checks
// that every command and flag named here exists.
var idArgs = []struct {
	cmd   string
	arg   idKind
	flags map[string]idKind
}{
	{cmd: "kms instance show", arg: idInstance},
	{cmd: "kms instance release", arg: idInstance},
	{cmd: "kms key create", flags: map[string]idKind{"instance": idInstance}},
	{cmd: "kms key list", flags: map[string]idKind{"instance": idInstance}},
	{cmd: "kms key rotate", arg: idKey},
	{cmd: "kms key delete", arg: idKey},
	{cmd: "kms key show", arg: idKey},
	{cmd: "kms encrypt", flags: map[string]idKind{"key": idKey}},
	{cmd: "kms secret create", flags: map[string]idKind{"instance": idInstance, "key": idKey}},
	{cmd: "kms secret list", flags: map[string]idKind{"instance": idInstance}},
	{cmd: "kms secret rotate", arg: idSecret},
	{cmd: "kms secret get", arg: idSecret},
	{cmd: "kms secret show", arg: idSecret},
	{cmd: "kms secret delete", arg: idSecret},
	{cmd: "backup-instance show", arg: idBackup},
	{cmd: "backup-instance enable", arg: idBackupInstance, flags: map[string]idKind{"kms-instance": idInstance}},
	{cmd: "backup-instance extend", arg: idBackupInstance},
	{cmd: "backup-instance renew", arg: idBackupInstance},
	{cmd: "backup-instance reset", arg: idBackupInstance},
	{cmd: "data list", arg: idBackup},
	{cmd: "data checkpoints", arg: idBackup},
	{cmd: "data diff", arg: idBackup},
	{cmd: "verify", arg: idBackup},
	{cmd: "download", arg: idBackup},
	{cmd: "replay", arg: idBackup},
	{cmd: "restore", flags: map[string]idKind{"from": idBackup, "to-instance": idInstance}},
	{cmd: "upload delete", arg: idUpload},
	{cmd: "audit list", flags: map[string]idKind{"backup": idBackup}},
}

// Bounds of one completion: the shell waits for it.
const (
	completionTimeout = 3 * time.Second
	completionMax     = 1000 // IDs offered at most
)

// registerIDCompletions attaches the completions of idArgs to root's
// commands.
func registerIDCompletions(a *app, root *cobra.Command) {
	for _, c := range idArgs {
		cmd, _, err := root.Find(strings.Fields(c.cmd))
		if err != nil || cmd.CommandPath() != root.Name()+" "+c.cmd {
			continue // the test names it
		}
		if c.arg != idNone {
			kind := c.arg
			cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return a.completeIDs(cmd, kind), cobra.ShellCompDirectiveNoFileComp
			}
		}
		for name, kind := range c.flags {
			_ = cmd.RegisterFlagCompletionFunc(name, func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
				return a.completeIDs(cmd, kind), cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
}

// completeIDs lists the IDs of kind as "ID\tdescription"; nothing when the
// server cannot be asked. The shell filters them by what was typed.
func (a *app) completeIDs(cmd *cobra.Command, kind idKind) []string {
	c, err := a.client(cmd)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	var out []string
	add := func(id string, desc ...string) bool {
		var d []string
		for _, s := range desc {
			if s = strings.Join(strings.Fields(s), " "); s != "" {
				d = append(d, s)
			}
		}
		if len(d) > 0 {
			id += "\t" + strings.Join(d, ", ")
		}
		out = append(out, id)
		return len(out) < completionMax
	}
	// The instances whose keys or secrets complete: --instance when the
	// command has it set, else every active one.
	instances := func() ([]string, error) {
		if f := cmd.Flags().Lookup("instance"); f != nil && f.Value.String() != "" {
			return []string{f.Value.String()}, nil
		}
		var ids []string
		err := eachPage(func(token string) (string, error) {
			l, err := c.ListInstances(ctx, 0, token)
			for _, in := range l.Items {
				if in.State != "released" {
					ids = append(ids, in.ID)
				}
			}
			return l.NextPageToken, err
		})
		return ids, err
	}
	switch kind {
	case idInstance:
		err = eachPage(func(token string) (string, error) {
			l, err := c.ListInstances(ctx, 0, token)
			for _, in := range l.Items {
				if in.State != "released" && !add(in.ID, in.Region) {
					return "", nil
				}
			}
			return l.NextPageToken, err
		})
	case idKey, idSecret:
		var ins []string
		if ins, err = instances(); err != nil {
			break
		}
	instance:
		for _, in := range ins {
			err = eachPage(func(token string) (string, error) {
				if kind == idKey {
					l, err := c.ListKeys(ctx, in, 0, token)
					for _, k := range l.Items {
						if !add(k.ID, k.Description) {
							return "", nil
						}
					}
					return l.NextPageToken, err
				}
				l, err := c.ListSecrets(ctx, in, 0, token)
				for _, s := range l.Items {
					if !add(s.Name, "key "+s.KeyID) {
						return "", nil
					}
				}
				return l.NextPageToken, err
			})
			if err != nil || len(out) >= completionMax {
				break instance
			}
		}
	case idBackupInstance, idBackup:
		err = eachPage(func(token string) (string, error) {
			l, err := c.ListBackupInstances(ctx, false, 0, token)
			for _, b := range l.Items {
				if kind == idBackupInstance && b.Kind == "upload" {
					continue
				}
				if !add(b.ID, b.Alias, b.Kind, b.State) {
					return "", nil
				}
			}
			return l.NextPageToken, err
		})
	case idUpload:
		err = eachPage(func(token string) (string, error) {
			l, err := c.ListUploads(ctx, 0, token)
			for _, u := range l.Items {
				if !add(u.ID, u.Alias) {
					return "", nil
				}
			}
			return l.NextPageToken, err
		})
	}
	if err != nil {
		return nil
	}
	return out
}

// eachPage calls page with each page token, starting with none, until it
// returns no next token or an error.
func eachPage(page func(token string) (next string, err error)) error {
	token := ""
	for {
		next, err := page(token)
		if err != nil || next == "" {
			return err
		}
		token = next
	}
}
