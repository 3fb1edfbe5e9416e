package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
)

func newAccountCmd(a *app) *cobra.Command {
	return newGroupCmd("account", "Create and list accounts, replace their tokens (admin token)",
		newAccountCreateCmd(a),
		newAccountListCmd(a),
		newAccountReplaceTokenCmd(a),
	)
}

func newAccountCreateCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "create NAME",
		Short: "Create an account and print its API token (shown once)",
		Long: `Create an account. Needs the admin token.

The new account's API token is printed once, in this response only: store it
now (it cannot be shown again), then use it with --token or KMSBACKUP_TOKEN.`,
		Example: `  kmsbackup account create acme --token "$ADMIN_TOKEN"
  kmsbackup account create acme -o json | jq -r .token`,
		Annotations:       map[string]string{noIDOutput: "would hide the new account's token, which is shown only once"},
		Args:              exactArgs("NAME"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			acc, err := c.CreateAccount(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return renderWithToken(a, acc, "Note: the token is shown only once; store it now. Use it with --token or KMSBACKUP_TOKEN.")
		},
	}
}

func newAccountReplaceTokenCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "replace-token ACCOUNT_ID",
		Short: "Give an account a new API token and print it (shown once); the old one stops working",
		Long: `Replace an account's API token. Needs the admin token.

The old token stops working at once, and every web console session opened
with it ends (on every node, as soon as it has read the change). The new
token is printed once, in this response only: store it now.`,
		Example: `  kmsbackup account replace-token acct_01J... --token "$ADMIN_TOKEN"
  kmsbackup account replace-token acct_01J... -o json | jq -r .token`,
		Annotations:       map[string]string{noIDOutput: "would hide the account's new token, which is shown only once"},
		Args:              exactArgs("ACCOUNT_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			acc, err := c.ReplaceAccountToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return renderWithToken(a, acc, "Note: the new token is shown only once; store it now. The old token no longer works.")
		},
	}
}

// renderWithToken prints an account with its token, which is shown this
// once, and note (on stderr beside JSON, so that stdout stays one document).
func renderWithToken(a *app, acc httpapi.Account, note string) error {
	if a.output == formatJSON {
		fmt.Fprintln(a.stderr, note)
	}
	return a.render(acc, func(w io.Writer) error {
		if err := writeFields(w, accountFields(acc)); err != nil {
			return err
		}
		_, err := fmt.Fprintln(w, "\n"+note)
		return err
	})
}

func newAccountListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List accounts (admin token)",
		Example: `  kmsbackup account list --token "$ADMIN_TOKEN"`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			l, err := c.ListAccounts(cmd.Context())
			if err != nil {
				return err
			}
			return renderList(a, l, accountHeader, accountRow)
		},
	}
}

func newWhoAmICmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:         "whoami",
		Short:       "Show which account the token belongs to",
		Example:     `  KMSBACKUP_TOKEN=... kmsbackup whoami`,
		Annotations: map[string]string{noIDOutput: "has no ID to print"},
		Args:        noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			who, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(who, func(w io.Writer) error { return writeFields(w, whoAmIFields(who)) })
		},
	}
}
