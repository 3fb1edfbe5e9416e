package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Validation of the command line's shape, before any request. Messages say
// what to do and never repeat a positional argument or a value, which may be
// a secret typed in the wrong place.

// exactArgs requires exactly the named positional arguments, none empty.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usagef("missing %s (usage: %s)", names[len(args)], cmd.UseLine())
		case len(args) > len(names):
			return usagef("accepts %d arg(s) (%s), received %d; values go in flags", len(names), strings.Join(names, " "), len(args))
		}
		for i, n := range names {
			if args[i] == "" {
				return usagef("%s must not be empty", n)
			}
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, received %d; values go in flags", cmd.CommandPath(), len(args))
	}
	return nil
}

// requireFlag refuses an empty required string flag; what says what the
// flag names, for the message.
func requireFlag(name, value, what string) error {
	if value == "" {
		return usagef("--%s is required: pass %s", name, what)
	}
	return nil
}

// positiveFlag refuses a set numeric flag below 1.
func positiveFlag[T ~int | ~int64](cmd *cobra.Command, name string, v T) error {
	if cmd.Flags().Changed(name) && v < 1 {
		return usagef("--%s must be a positive number (1 or more)", name)
	}
	return nil
}

// pageFlags are the paging flags of list commands.
type pageFlags struct {
	size  int
	token string
}

func (p *pageFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&p.size, "page-size", 0, "maximum items per page (the server's default when omitted)")
	cmd.Flags().StringVar(&p.token, "page-token", "", "token of the page to get, printed by the previous page")
}

func (p *pageFlags) validate(cmd *cobra.Command) error {
	return positiveFlag(cmd, "page-size", p.size)
}

// valueFlags are --value and --value-file of secret commands.
type valueFlags struct {
	value string
	file  string
}

func (v *valueFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&v.value, "value", "", "the secret value, taken verbatim")
	cmd.Flags().StringVar(&v.file, "value-file", "", "read the secret value from this file, byte for byte (- for stdin)")
	_ = cmd.MarkFlagFilename("value-file")
}

// read returns the value, exactly as given: --value as typed (a trailing
// newline included), the file or stdin byte for byte.
func (v *valueFlags) read(cmd *cobra.Command, stdin io.Reader) ([]byte, error) {
	hasValue, hasFile := cmd.Flags().Changed("value"), cmd.Flags().Changed("value-file")
	switch {
	case hasValue && hasFile:
		return nil, usagef("--value and --value-file are mutually exclusive: pass only one")
	case hasValue:
		return []byte(v.value), nil
	case !hasFile:
		return nil, usagef("the secret value is required: pass --value VALUE, or --value-file FILE (--value-file - reads stdin)")
	case v.file == "":
		return nil, usagef("--value-file needs a file name, or - to read stdin")
	case v.file == "-":
		return readStdin(cmd.Context(), stdin, "--value-file - reads the value from stdin, but stdin is a terminal: pipe the value in, or use --value-file FILE")
	}
	b, err := os.ReadFile(v.file)
	if err != nil {
		return nil, domain.Errorf(domain.ErrInvalidArgument, "read --value-file", "", "", "%v", err)
	}
	return b, nil
}

// readStdin reads stdin to its end, refusing to wait on a terminal (the
// user would see a hang): ttyMsg says what to do instead. An interrupt
// (ctx done) ends the wait even when the writer never closes the pipe.
func readStdin(ctx context.Context, stdin io.Reader, ttyMsg string) ([]byte, error) {
	if stdin == nil || isTerminal(stdin) {
		return nil, usagef("%s", ttyMsg)
	}
	type read struct {
		b   []byte
		err error
	}
	done := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(stdin)
		done <- read{b, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, domain.Errorf(domain.ErrInvalidArgument, "read stdin", "", "", "%v", r.err)
		}
		return r.b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// newItemListCmd builds "kms NOUN list --instance ID": a paged list of
// one kind of item of a KMS instance.
func newItemListCmd[T any](a *app, noun, short string,
	list func(ctx context.Context, c *httpapi.Client, instance string, size int, token string) (httpapi.List[T], error),
	header []string, row func(T) []string) *cobra.Command {
	var (
		instance string
		page     pageFlags
	)
	cmd := &cobra.Command{
		Use:   "list --instance INSTANCE_ID",
		Short: short,
		Example: fmt.Sprintf(`  kmsbackup kms %[1]s list --instance INSTANCE_ID
  kmsbackup kms %[1]s list --instance INSTANCE_ID --page-size 50 -o json`, noun),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("instance", instance, "the KMS instance ID (see kmsbackup kms instance list)"); err != nil {
				return err
			}
			if err := page.validate(cmd); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			l, err := list(cmd.Context(), c, instance, page.size, page.token)
			if err != nil {
				return err
			}
			return renderList(a, l, header, row)
		},
	}
	cmd.Flags().StringVar(&instance, "instance", "", "KMS instance ID (required)")
	page.register(cmd)
	return cmd
}

// newPagedListCmd builds an account-wide, paged list command ("list" with
// --page-size and --page-token); cmd gives its texts, list is a client
// method such as (*httpapi.Client).ListInstances.
func newPagedListCmd[T any](a *app, cmd *cobra.Command,
	list func(c *httpapi.Client, ctx context.Context, size int, token string) (httpapi.List[T], error),
	header []string, row func(T) []string) *cobra.Command {
	var page pageFlags
	cmd.Use, cmd.Args = "list", noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := page.validate(cmd); err != nil {
			return err
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		l, err := list(c, cmd.Context(), page.size, page.token)
		if err != nil {
			return err
		}
		return renderList(a, l, header, row)
	}
	page.register(cmd)
	return cmd
}
