// Package softkms is the software KMS's own cryptography: Cipher, the data
// plane behind the software KMS's Encrypt and Decrypt (fresh 256-bit key
// material from crypto/rand, and AES-256-GCM with random 96-bit nonces
// under one version of a key, bound to the caller's associated data).
//
// It never stores or caches key material (the caller passes it in for each
// call, sealed by the envelope package at rest), never puts key material,
// plaintext or ciphertext bytes in an error, and never returns
// unauthenticated bytes or panics on hostile input.
package softkms
