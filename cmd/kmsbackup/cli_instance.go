package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
)

func newInstanceCmd(a *app) *cobra.Command {
	return newGroupCmd("instance", "Create, list, show and release KMS instances",
		newInstanceCreateCmd(a),
		newInstanceListCmd(a),
		newInstanceShowCmd(a),
		newInstanceReleaseCmd(a),
	)
}

func (a *app) renderInstance(in httpapi.Instance) error {
	return a.render(in, func(w io.Writer) error { return writeFields(w, instanceFields(in)) })
}

func newInstanceCreateCmd(a *app) *cobra.Command {
	var (
		region                string
		keyQuota, secretQuota int64
	)
	cmd := &cobra.Command{
		Use:   "create --region REGION",
		Short: "Create a KMS instance in a region",
		Long: `Create a KMS instance in a region. Keys and secrets live in an instance;
its quotas bound how many it holds (the server's defaults when omitted).`,
		Example: `  kmsbackup kms instance create --region eu-west-1
  kmsbackup kms instance create --region eu-west-1 --key-quota 50 --secret-quota 200`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("region", region, "the region of the new instance, e.g. --region eu-west-1"); err != nil {
				return err
			}
			if err := positiveFlag(cmd, "key-quota", keyQuota); err != nil {
				return err
			}
			if err := positiveFlag(cmd, "secret-quota", secretQuota); err != nil {
				return err
			}
			req := httpapi.CreateInstanceRequest{Region: region}
			if cmd.Flags().Changed("key-quota") {
				req.KeyQuota = &keyQuota
			}
			if cmd.Flags().Changed("secret-quota") {
				req.SecretQuota = &secretQuota
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			in, err := c.CreateInstance(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.renderInstance(in)
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "region of the instance (required)")
	cmd.Flags().Int64Var(&keyQuota, "key-quota", 0, "maximum number of live keys")
	cmd.Flags().Int64Var(&secretQuota, "secret-quota", 0, "maximum number of live secrets")
	return cmd
}

func newInstanceListCmd(a *app) *cobra.Command {
	return newPagedListCmd(a, &cobra.Command{
		Short: "List KMS instances",
		Example: `  kmsbackup kms instance list
  kmsbackup kms instance list --page-size 20 --page-token TOKEN -o json`,
	}, (*httpapi.Client).ListInstances, instanceHeader, instanceRow)
}

func newInstanceShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "show INSTANCE_ID",
		Short:             "Show a KMS instance",
		Example:           `  kmsbackup kms instance show INSTANCE_ID`,
		Args:              exactArgs("INSTANCE_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			in, err := c.GetInstance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.renderInstance(in)
		},
	}
}

func newInstanceReleaseCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "release INSTANCE_ID",
		Short: "Release a KMS instance",
		Long: `Release a KMS instance: its keys and secrets can no longer be used.
Backups already taken of it are kept.`,
		Example:           `  kmsbackup kms instance release INSTANCE_ID`,
		Args:              exactArgs("INSTANCE_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			in, err := c.ReleaseInstance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.renderInstance(in)
		},
	}
}
