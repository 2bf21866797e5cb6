package media

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/rempart-hs/rempart/internal/audit"
	"github.com/rempart-hs/rempart/internal/storage"
)

// ParseMediaRef accepts a local media reference, mxc://server/id or a bare
// media ID, and returns the media ID.
func (s *Service) ParseMediaRef(ref string) (string, error) {
	id := ref
	if rest, ok := strings.CutPrefix(ref, "mxc://"); ok {
		server, mid, ok := strings.Cut(rest, "/")
		if !ok || server != s.cfg.ServerName {
			return "", fmt.Errorf("%q is not local media of %s", ref, s.cfg.ServerName)
		}
		id = mid
	}
	if !mediaIDRe.MatchString(id) {
		return "", fmt.Errorf("%q is not a media ID", ref)
	}
	return id, nil
}

// SetQuarantined quarantines (or releases) a media ID: quarantined media is
// kept on disk for investigation but served to nobody (404). The act is
// audited under actor.
func (s *Service) SetQuarantined(ctx context.Context, actor, mediaID string, q bool) error {
	action := "media.quarantine"
	if !q {
		action = "media.unquarantine"
	}
	return s.db.WithTx(ctx, func(tx *storage.Tx) error {
		ok, err := tx.SetMediaQuarantined(ctx, mediaID, q)
		if err == nil && !ok {
			err = storage.ErrNotFound
		}
		if err != nil {
			return err
		}
		return s.audit.RecordTx(ctx, tx, audit.Entry{Actor: actor, Action: action, Target: "mxc://" + s.cfg.ServerName + "/" + mediaID})
	})
}

// Delete removes a media ID and, when no other media ID or thumbnail uses
// it, its content and cached thumbnails. The act is audited under actor.
func (s *Service) Delete(ctx context.Context, actor, mediaID string) error {
	var hash string
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		if hash, err = tx.DeleteMedia(ctx, mediaID); err != nil {
			return err
		}
		return s.audit.RecordTx(ctx, tx, audit.Entry{Actor: actor, Action: "media.delete", Target: "mxc://" + s.cfg.ServerName + "/" + mediaID})
	})
	if err != nil || hash == "" {
		return err
	}
	return s.removeContent(ctx, hash)
}

// removeContent deletes content nothing points at any more, with the
// thumbnails made from it.
func (s *Service) removeContent(ctx context.Context, hash string) error {
	var thumbs []string
	err := s.store.RemoveIfUnused(hash, func() (bool, error) {
		var used bool
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
			var err error
			if used, err = tx.MediaHashInUse(ctx, hash); err != nil || used {
				return err
			}
			thumbs, err = tx.DeleteMediaThumbnails(ctx, hash)
			return err
		})
		return used, err
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, th := range thumbs {
		errs = append(errs, s.store.RemoveIfUnused(th, func() (bool, error) {
			var used bool
			err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
				var err error
				used, err = tx.MediaHashInUse(ctx, th)
				return err
			})
			return used, err
		}))
	}
	return errors.Join(errs...)
}

// UserMedia lists the media IDs a user uploaded.
func (s *Service) UserMedia(ctx context.Context, userID string) ([]string, error) {
	return s.db.MediaIDsByUser(ctx, userID)
}

var mxcRe = regexp.MustCompile(`mxc://([A-Za-z0-9.:\[\]-]+)/([A-Za-z0-9_-]{1,255})`)

// RoomMedia lists the local media IDs that the events of a room refer to
// (attachments, thumbnails, avatars; encrypted rooms only reveal the
// URLs of their encrypted attachments, which is what is stored).
func (s *Service) RoomMedia(ctx context.Context, roomID string) ([]string, error) {
	seen := map[string]bool{}
	err := s.db.EachRoomEventJSON(ctx, roomID, func(js string) error {
		for _, m := range mxcRe.FindAllStringSubmatch(js, -1) {
			if m[1] == s.cfg.ServerName {
				seen[m[2]] = true
			}
		}
		return nil
	})
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, err
}
