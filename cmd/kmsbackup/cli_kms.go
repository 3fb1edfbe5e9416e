package main

import (
	"bytes"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
)

func newKMSCmd(a *app) *cobra.Command {
	return newGroupCmd("kms", "Use the built-in KMS: instances, keys, secrets, encrypt and decrypt",
		newInstanceCmd(a),
		newKeyCmd(a),
		newSecretCmd(a),
		newEncryptCmd(a),
		newDecryptCmd(a),
	)
}

func newEncryptCmd(a *app) *cobra.Command {
	var keyID, region, plaintext string
	cmd := &cobra.Command{
		Use:   "encrypt --key KEY_ID (--plaintext TEXT | < FILE)",
		Short: "Encrypt data under a key and print the ciphertext",
		Long: `Encrypt data under the primary version of a key and print the ciphertext.

The plaintext is --plaintext, or else stdin read to its end, byte for byte.
The ciphertext names its key and version, so decrypt needs nothing else.`,
		Example: `  kmsbackup kms encrypt --key KEY_ID --plaintext 'hello'
  kmsbackup kms encrypt --key KEY_ID < data.bin > data.ct
  kmsbackup kms encrypt --key KEY_ID --plaintext 'hello' -o json`,
		Annotations: map[string]string{noIDOutput: "prints a ciphertext, not an ID"},
		Args:        noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("key", keyID, "the ID of the key to encrypt under"); err != nil {
				return err
			}
			var data []byte
			if cmd.Flags().Changed("plaintext") {
				data = []byte(plaintext)
			} else {
				var err error
				data, err = readStdin(cmd.Context(), a.stdin, "no plaintext: pass --plaintext TEXT, or pipe the data on stdin (stdin is a terminal)")
				if err != nil {
					return err
				}
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			res, err := c.Encrypt(cmd.Context(), httpapi.EncryptRequest{KeyID: keyID, Region: region, Plaintext: data})
			if err != nil {
				return err
			}
			return a.render(res, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, res.Ciphertext)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&keyID, "key", "", "ID of the key (required)")
	cmd.Flags().StringVar(&plaintext, "plaintext", "", "the data to encrypt, verbatim (default: read stdin)")
	regionFlag(cmd, &region)
	return cmd
}

func newDecryptCmd(a *app) *cobra.Command {
	var ciphertext, region string
	cmd := &cobra.Command{
		Use:   "decrypt (--ciphertext CIPHERTEXT | < FILE)",
		Short: "Decrypt a ciphertext and print the plaintext bytes",
		Long: `Decrypt a ciphertext made by "kmsbackup kms encrypt".

The ciphertext is --ciphertext, or else read from stdin (surrounding white
space ignored). In table mode the plaintext is written to stdout exactly, with
no newline added unless stdout is a terminal; -o json prints the API's
document, with the plaintext in base64.`,
		Example: `  kmsbackup kms decrypt --ciphertext 'kms1:...'
  kmsbackup kms encrypt --key KEY_ID < data.bin | kmsbackup kms decrypt > copy.bin
  kmsbackup kms decrypt < data.ct -o json | jq -r .plaintext | base64 -d`,
		Annotations: map[string]string{noIDOutput: "prints plaintext, not an ID"},
		Args:        noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ct := ciphertext
			if !cmd.Flags().Changed("ciphertext") {
				b, err := readStdin(cmd.Context(), a.stdin, "no ciphertext: pass --ciphertext CIPHERTEXT, or pipe it on stdin (stdin is a terminal)")
				if err != nil {
					return err
				}
				ct = string(bytes.TrimSpace(b))
			}
			if ct == "" {
				return usagef("the ciphertext is empty: pass --ciphertext CIPHERTEXT, or pipe the output of kmsbackup kms encrypt")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			res, err := c.Decrypt(cmd.Context(), httpapi.DecryptRequest{Ciphertext: ct, Region: region})
			if err != nil {
				return err
			}
			if a.output == formatJSON {
				return writeJSON(a.stdout, res)
			}
			return a.writeRaw(res.Plaintext)
		},
	}
	cmd.Flags().StringVar(&ciphertext, "ciphertext", "", "the ciphertext (default: read stdin)")
	regionFlag(cmd, &region)
	return cmd
}
