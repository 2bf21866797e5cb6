package media

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"
)

// Store keeps media bytes on the local filesystem, named by their SHA-256:
// <root>/<h[0:2]>/<h[2:4]>/<h>. Identical content is stored once. Uploads
// are written to <root>/tmp first and renamed into place only once they
// are complete and accepted, so a failed or refused upload leaves nothing
// behind. The root and everything under it is private to the server
// (directories 0700, files 0600).
type Store struct {
	root string
	// locks serialises, per hash, putting content against removing it.
	mu    sync.Mutex
	locks map[string]*hashLock
}

type hashLock struct {
	sync.Mutex
	refs int
}

var hashRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// OpenStore creates (if needed) and opens the media root, removing
// temporary files left by a crash.
func OpenStore(root string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("media root: %w", err)
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return nil, fmt.Errorf("media root: %w", err)
	}
	ents, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("media root: %w", err)
	}
	for _, e := range ents {
		_ = os.Remove(filepath.Join(root, "tmp", e.Name()))
	}
	return &Store{root: root, locks: map[string]*hashLock{}}, nil
}

// Path returns the file of a content hash. The hash is checked so that no
// caller can make it name anything else.
func (s *Store) Path(hash string) (string, error) {
	if !hashRe.MatchString(hash) {
		return "", fmt.Errorf("invalid content hash %q", hash)
	}
	return filepath.Join(s.root, hash[0:2], hash[2:4], hash), nil
}

// Open opens the content of a hash for reading.
func (s *Store) Open(hash string) (*os.File, error) {
	p, err := s.Path(hash)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// lock takes the per-hash lock and returns its release.
func (s *Store) lock(hash string) func() {
	s.mu.Lock()
	l := s.locks[hash]
	if l == nil {
		l = &hashLock{}
		s.locks[hash] = l
	}
	l.refs++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, hash)
		}
		s.mu.Unlock()
	}
}

// Temp is an upload being received: bytes go to a private temporary file
// while their hash and size are computed.
type Temp struct {
	f    *os.File
	size int64
	done bool
}

// ErrTooLarge is returned by Temp.ReadFrom when the body exceeds the limit.
var ErrTooLarge = errors.New("content too large")

// NewTemp starts a temporary upload file.
func (s *Store) NewTemp() (*Temp, error) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	f, err := os.OpenFile(filepath.Join(s.root, "tmp", hex.EncodeToString(rnd[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	return &Temp{f: f}, nil
}

// Fill copies r into the temporary file, at most limit bytes: one more
// byte gives ErrTooLarge. It returns the hex SHA-256 of the content.
func (t *Temp) Fill(r io.Reader, limit int64) (string, error) {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(t.f, h), io.LimitReader(r, limit+1))
	t.size = n
	if err != nil {
		return "", err
	}
	if n > limit {
		return "", ErrTooLarge
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Size is the number of bytes received.
func (t *Temp) Size() int64 { return t.size }

// Reader returns a reader over the whole received content.
func (t *Temp) Reader() (io.Reader, error) {
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.LimitReader(t.f, t.size), nil
}

// Discard removes the temporary file (no-op after Commit).
func (t *Temp) Discard() {
	if t.done {
		return
	}
	t.done = true
	name := t.f.Name()
	t.f.Close()
	os.Remove(name)
}

// Commit moves the temporary file into place under hash, or drops it when
// that content is already stored. record runs under the hash's lock once
// the content is in place (it writes the database row pointing at it); if
// it fails, content that was not there before is removed again.
func (s *Store) Commit(t *Temp, hash string, record func() error) error {
	defer t.Discard()
	p, err := s.Path(hash)
	if err != nil {
		return err
	}
	unlock := s.lock(hash)
	defer unlock()
	existed := false
	if _, err := os.Stat(p); err == nil {
		existed = true
	} else {
		if err := t.f.Sync(); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.Rename(t.f.Name(), p); err != nil {
			return fmt.Errorf("store media: %w", err)
		}
		t.done = true
		t.f.Close()
	}
	if err := record(); err != nil {
		if !existed {
			os.Remove(p)
		}
		return err
	}
	return nil
}

// PutBytes stores small content (thumbnails) directly and returns its hash.
func (s *Store) PutBytes(b []byte, record func(hash string) error) (string, error) {
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:])
	t, err := s.NewTemp()
	if err != nil {
		return "", err
	}
	if _, err := t.f.Write(b); err != nil {
		t.Discard()
		return "", err
	}
	t.size = int64(len(b))
	return hash, s.Commit(t, hash, func() error { return record(hash) })
}

// RemoveIfUnused deletes the content of a hash when inUse (checked under
// the hash's lock) reports that nothing points at it any more.
func (s *Store) RemoveIfUnused(hash string, inUse func() (bool, error)) error {
	p, err := s.Path(hash)
	if err != nil {
		return err
	}
	unlock := s.lock(hash)
	defer unlock()
	used, err := inUse()
	if err != nil || used {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
