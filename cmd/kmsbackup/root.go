package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

const (
	defaultAddr = "http://127.0.0.1:8080"
	envAddr     = "KMSBACKUP_ADDR"
	envToken    = "KMSBACKUP_TOKEN"
)

// app is one invocation of the command line: its I/O streams, the global
// flags, and whether a command's Run has started (errors before that are
// cobra's parsing and validation errors, hence usage errors).
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	addr   string
	token  string
	output string

	ran bool
}

// execute runs the command line with args and returns its error, a
// *usageError for mistakes in the command line. For those it also prints
// the failing command's usage to stderr; main prints the error itself.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return nil
	}
	var ue *usageError
	if !a.ran && !errors.As(err, &ue) {
		err = &usageError{err: err}
	}
	if errors.As(err, &ue) && cmd != nil {
		fmt.Fprint(stderr, cmd.UsageString())
		fmt.Fprintln(stderr)
	}
	return err
}

// newRootCmd builds the whole command tree.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "kmsbackup",
		Short: "Event-sourced backup engine for key management services",
		Long: `kmsbackup is an event-sourced backup engine for key management services.

"kmsbackup server" runs the daemon. Every other command is a client of its
HTTP API: it needs the server's address (--addr or ` + envAddr + `) and an API
token (--token or ` + envToken + `). Flags take precedence over the environment;
prefer the environment for the token, since other users can see command lines.

Output is a table for people (-o table, the default), exactly one JSON
document for programs (-o json), or only the IDs, one per line, for shell
scripts (-o id: the id of the object shown, created or changed, or of every
item of a list; commands whose result has no ID refuse it).

` + exitCodeHelp(),
		Example: `  export KMSBACKUP_ADDR=http://127.0.0.1:8080 KMSBACKUP_TOKEN=...
  kmsbackup whoami
  kmsbackup kms instance create --region eu-west-1
  kmsbackup kms key list --instance INSTANCE_ID -o json
  BACKUP=$(kmsbackup backup-instance create --region eu-west-1 --viewable-days 30 --term 1y -o id)
  source <(kmsbackup completion bash)`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch a.output {
			case formatTable, formatJSON:
			case formatID:
				if why, ok := cmd.Annotations[noIDOutput]; ok {
					return usagef("-o id: %s %s; use -o table or -o json", cmd.CommandPath(), why)
				}
			default:
				return usagef("invalid --output %s: use table, json or id", domain.Quote(a.output))
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", defaultAddr, "server address (env "+envAddr+")")
	pf.StringVar(&a.token, "token", "", "API token (env "+envToken+")")
	pf.StringVarP(&a.output, "output", "o", formatTable, "output format: table, json or id")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{formatTable, formatJSON, formatID}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("addr", cobra.NoFileCompletions)
	_ = root.RegisterFlagCompletionFunc("token", cobra.NoFileCompletions)
	groupRunE(root)
	// Groups are runnable only to refuse unknown subcommands: do not show
	// "kmsbackup kms [flags]" as a way to use them.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(),
		"{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))

	root.AddCommand(
		newServerCmd(),
		newAccountCmd(a),
		newWhoAmICmd(a),
		newKMSCmd(a),
		newEventsCmd(a),
		newBackupInstanceCmd(a),
		newDataCmd(a),
		newVerifyCmd(a),
		newRestoreCmd(a),
		newDownloadCmd(a),
		newUploadCmd(a),
		newReplayCmd(a),
		newAuditCmd(a),
		newDevCmd(a),
	)
	markRun(root, &a.ran)
	return root
}

// groupRunE makes a command that only groups subcommands answer an unknown
// subcommand with a usage error (cobra would print help and succeed), and
// print its help when called alone.
func groupRunE(c *cobra.Command) {
	c.Args = cobra.ArbitraryArgs
	c.ValidArgsFunction = cobra.NoFileCompletions
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %s for %q", domain.Quote(args[0]), cmd.CommandPath())
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return &usageError{err: errors.New(msg)}
	}
}

// newGroupCmd returns a command that groups subcommands.
func newGroupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	groupRunE(c)
	c.AddCommand(subs...)
	return c
}

// markRun wraps the Run of every command under c so that *ran is set when
// it starts: cobra validates flags, arguments and required flags before
// that, so an error while *ran is false is a usage error.
func markRun(c *cobra.Command, ran *bool) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			*ran = true
			return run(cmd, args)
		}
	} else if run := c.Run; run != nil {
		c.Run = func(cmd *cobra.Command, args []string) {
			*ran = true
			run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markRun(sub, ran)
	}
}

// client returns the API client for the global flags and environment. A
// flag set on the command line wins over the environment.
func (a *app) client(cmd *cobra.Command) (*httpapi.Client, error) {
	addr, token := a.addr, a.token
	if v, ok := os.LookupEnv(envAddr); ok && !cmd.Flags().Changed("addr") {
		addr = v
	}
	if v, ok := os.LookupEnv(envToken); ok && !cmd.Flags().Changed("token") {
		token = v
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("invalid server address %s (--addr or %s): use a URL such as %s", domain.Quote(addr), envAddr, defaultAddr)
	}
	return &httpapi.Client{Base: addr, Token: token}, nil
}
