package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
)

func newSecretCmd(a *app) *cobra.Command {
	return newGroupCmd("secret", "Create, rotate, get, show, delete and list secrets",
		newSecretCreateCmd(a),
		newSecretRotateCmd(a),
		newSecretGetCmd(a),
		newSecretShowCmd(a),
		newSecretDeleteCmd(a),
		newSecretListCmd(a),
	)
}

func (a *app) renderSecret(s httpapi.Secret) error {
	return a.render(s, func(w io.Writer) error { return writeSecret(w, s) })
}

func newSecretCreateCmd(a *app) *cobra.Command {
	var (
		instance, keyID string
		value           valueFlags
	)
	cmd := &cobra.Command{
		Use:   "create NAME --instance INSTANCE_ID --key KEY_ID (--value VALUE | --value-file FILE)",
		Short: "Create a secret, encrypted under a key of its instance",
		Long: `Create a secret. Its value is encrypted under a key of the same instance.

The value is taken verbatim: --value as typed (a trailing newline is kept),
--value-file byte for byte, "--value-file -" from stdin. Prefer --value-file:
a --value may be kept in your shell history.`,
		Example: `  kmsbackup kms secret create db-password --instance INSTANCE_ID --key KEY_ID --value-file pw.txt
  printf %s "$PASSWORD" | kmsbackup kms secret create db-password --instance INSTANCE_ID --key KEY_ID --value-file -`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("instance", instance, "the KMS instance ID (see kmsbackup kms instance list)"); err != nil {
				return err
			}
			if err := requireFlag("key", keyID, "the ID of a key of that instance, which encrypts the secret"); err != nil {
				return err
			}
			v, err := value.read(cmd, a.stdin)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			s, err := c.CreateSecret(cmd.Context(), httpapi.CreateSecretRequest{Name: args[0], Instance: instance, KeyID: keyID, Value: v})
			if err != nil {
				return err
			}
			return a.renderSecret(s)
		},
	}
	cmd.Flags().StringVar(&instance, "instance", "", "KMS instance ID (required)")
	cmd.Flags().StringVar(&keyID, "key", "", "ID of the key that encrypts the secret (required)")
	value.register(cmd)
	return cmd
}

func newSecretRotateCmd(a *app) *cobra.Command {
	var (
		region string
		value  valueFlags
	)
	cmd := &cobra.Command{
		Use:   "rotate NAME (--value VALUE | --value-file FILE)",
		Short: "Put a new value in a secret, as a new version",
		Example: `  kmsbackup kms secret rotate db-password --value-file new-pw.txt
  printf %s "$PASSWORD" | kmsbackup kms secret rotate db-password --value-file -`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := value.read(cmd, a.stdin)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			s, err := c.RotateSecret(cmd.Context(), args[0], httpapi.RotateSecretRequest{Region: region, Value: v})
			if err != nil {
				return err
			}
			return a.renderSecret(s)
		},
	}
	value.register(cmd)
	regionFlag(cmd, &region)
	return cmd
}

func newSecretGetCmd(a *app) *cobra.Command {
	var (
		region  string
		version int
	)
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a secret's value",
		Long: `Print a secret's value: the current version, or --version N.

In table mode the value is written to stdout exactly, with no newline added
unless stdout is a terminal; -o json prints the API's document, with the
value in base64.`,
		Example: `  kmsbackup kms secret get db-password > pw.txt
  kmsbackup kms secret get db-password --version 1
  kmsbackup kms secret get db-password -o json | jq -r .value | base64 -d`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("version") && version < 1 {
				return usagef("--version must be 1 or more (omit it for the current version)")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			v, err := c.GetSecretValue(cmd.Context(), args[0], region, version)
			if err != nil {
				return err
			}
			if a.output != formatTable {
				return a.render(v, nil)
			}
			return a.writeRaw(v.Value)
		},
	}
	cmd.Flags().IntVar(&version, "version", 0, "version to get (default: the current one)")
	regionFlag(cmd, &region)
	return cmd
}

func newSecretShowCmd(a *app) *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a secret's metadata and versions (never its value)",
		Example:           `  kmsbackup kms secret show db-password`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			s, err := c.GetSecret(cmd.Context(), args[0], region)
			if err != nil {
				return err
			}
			return a.renderSecret(s)
		},
	}
	regionFlag(cmd, &region)
	return cmd
}

func newSecretDeleteCmd(a *app) *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete a secret",
		Example:           `  kmsbackup kms secret delete db-password`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), args[0], region); err != nil {
				return err
			}
			return a.render(deleted{ID: args[0], Deleted: true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Deleted secret %s\n", cell(args[0]))
				return err
			})
		},
	}
	regionFlag(cmd, &region)
	return cmd
}

func newSecretListCmd(a *app) *cobra.Command {
	return newItemListCmd(a, "secret", "List the secrets of a KMS instance (metadata only)",
		func(ctx context.Context, c *httpapi.Client, instance string, size int, token string) (httpapi.List[httpapi.Secret], error) {
			return c.ListSecrets(ctx, instance, size, token)
		}, secretHeader, secretRow)
}
