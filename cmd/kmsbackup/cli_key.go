package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
)

func newKeyCmd(a *app) *cobra.Command {
	return newGroupCmd("key", "Create, rotate, delete, show and list keys",
		newKeyCreateCmd(a),
		newKeyRotateCmd(a),
		newKeyDeleteCmd(a),
		newKeyShowCmd(a),
		newKeyListCmd(a),
	)
}

func (a *app) renderKey(k httpapi.Key) error {
	return a.render(k, func(w io.Writer) error { return writeKey(w, k) })
}

// regionFlag registers --region, which names the region of a key or secret
// when its ID alone is ambiguous.
func regionFlag(cmd *cobra.Command, region *string) {
	cmd.Flags().StringVar(region, "region", "", "region of the key or secret, when its ID exists in several regions")
	_ = cmd.RegisterFlagCompletionFunc("region", cobra.NoFileCompletions)
}

func newKeyCreateCmd(a *app) *cobra.Command {
	var instance, description string
	cmd := &cobra.Command{
		Use:   "create --instance INSTANCE_ID",
		Short: "Create a key in a KMS instance",
		Example: `  kmsbackup kms key create --instance INSTANCE_ID --description "payments data key"
  KEY=$(kmsbackup kms key create --instance INSTANCE_ID -o json | jq -r .id)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("instance", instance, "the KMS instance ID (see kmsbackup kms instance list)"); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			k, err := c.CreateKey(cmd.Context(), httpapi.CreateKeyRequest{Instance: instance, Description: description})
			if err != nil {
				return err
			}
			return a.renderKey(k)
		},
	}
	cmd.Flags().StringVar(&instance, "instance", "", "KMS instance ID (required)")
	cmd.Flags().StringVar(&description, "description", "", "what the key is for")
	return cmd
}

func newKeyRotateCmd(a *app) *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "rotate KEY_ID",
		Short: "Rotate a key: new encryptions use a new version",
		Long: `Rotate a key: a new version becomes primary and encrypts from now on.
Ciphertexts of the older versions still decrypt.`,
		Example:           `  kmsbackup kms key rotate KEY_ID`,
		Args:              exactArgs("KEY_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			k, err := c.RotateKey(cmd.Context(), args[0], region)
			if err != nil {
				return err
			}
			return a.renderKey(k)
		},
	}
	regionFlag(cmd, &region)
	return cmd
}

func newKeyDeleteCmd(a *app) *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:               "delete KEY_ID",
		Short:             "Delete a key",
		Example:           `  kmsbackup kms key delete KEY_ID --region eu-west-1`,
		Args:              exactArgs("KEY_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteKey(cmd.Context(), args[0], region); err != nil {
				return err
			}
			return a.render(deleted{ID: args[0], Deleted: true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Deleted key %s\n", cell(args[0]))
				return err
			})
		},
	}
	regionFlag(cmd, &region)
	return cmd
}

func newKeyShowCmd(a *app) *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:               "show KEY_ID",
		Short:             "Show a key and its versions (never its material)",
		Example:           `  kmsbackup kms key show KEY_ID -o json`,
		Args:              exactArgs("KEY_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			k, err := c.GetKey(cmd.Context(), args[0], region)
			if err != nil {
				return err
			}
			return a.renderKey(k)
		},
	}
	regionFlag(cmd, &region)
	return cmd
}

func newKeyListCmd(a *app) *cobra.Command {
	return newItemListCmd(a, "key", "List the keys of a KMS instance",
		func(ctx context.Context, c *httpapi.Client, instance string, size int, token string) (httpapi.List[httpapi.Key], error) {
			return c.ListKeys(ctx, instance, size, token)
		}, keyHeader, keyRow)
}
