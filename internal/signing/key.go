// Package signing loads or generates the server's ed25519 signing key, in
// the same file format as Synapse ("ed25519 <key id> <unpadded base64 seed>").
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Key is the server signing key.
type Key struct {
	ID   string // e.g. "ed25519:a_Xyz1"
	Priv ed25519.PrivateKey
}

// LoadOrCreate reads the key at path, creating it (mode 0600) when missing.
func LoadOrCreate(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return create(path)
	}
	if err != nil {
		return Key{}, fmt.Errorf("read signing key: %w", err)
	}
	fields := strings.Fields(string(b))
	if len(fields) != 3 || fields[0] != "ed25519" {
		return Key{}, fmt.Errorf("signing key %s: expected \"ed25519 <id> <seed>\"", path)
	}
	seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fields[2], "="))
	if err != nil || len(seed) != ed25519.SeedSize {
		return Key{}, fmt.Errorf("signing key %s: bad seed", path)
	}
	return Key{ID: "ed25519:" + fields[1], Priv: ed25519.NewKeyFromSeed(seed)}, nil
}

func create(path string) (Key, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return Key{}, err
	}
	idBytes := make([]byte, 4)
	if _, err := rand.Read(idBytes); err != nil {
		return Key{}, err
	}
	id := "a_" + base64.RawURLEncoding.EncodeToString(idBytes)[:4]
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Key{}, err
	}
	line := fmt.Sprintf("ed25519 %s %s\n", id, base64.RawStdEncoding.EncodeToString(seed))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Key{}, fmt.Errorf("create signing key: %w", err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return Key{}, err
	}
	if err := f.Close(); err != nil {
		return Key{}, err
	}
	return Key{ID: "ed25519:" + id, Priv: ed25519.NewKeyFromSeed(seed)}, nil
}
