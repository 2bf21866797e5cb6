package e2ee

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Bounds on one /sendToDevice request.
const (
	maxToDeviceTargets = 10000
	maxToDeviceContent = 65536
)

// putSendToDevice serves PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}.
// Messages go to one device or, with "*", to every device of a user; the
// transaction ID makes a retried request deliver nothing twice.
func (s *Service) putSendToDevice(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	evType, txnID := r.PathValue("eventType"), r.PathValue("txnId")
	if evType == "" || len(evType) > 255 || txnID == "" || len(txnID) > 255 {
		return nil, httpapi.InvalidParam("invalid event type or transaction ID")
	}
	var body struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if body.Messages == nil {
		return nil, httpapi.MissingParam("missing messages")
	}
	type target struct {
		user, device string
		content      json.RawMessage
	}
	var targets []target
	n := 0
	for u, devs := range body.Messages {
		if _, err := spec.NewUserID(u, true); err != nil {
			return nil, httpapi.InvalidParam("invalid user ID %q", u)
		}
		for d, c := range devs {
			n++
			if d == "" || len(d) > 255 {
				return nil, httpapi.InvalidParam("invalid device ID")
			}
			if len(c) > maxToDeviceContent {
				return nil, httpapi.TooLarge("to-device message content too large")
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(c, &obj); err != nil || obj == nil {
				return nil, httpapi.BadJSON("message content must be a JSON object")
			}
			if isLocal(req, u) { // no federation: remote recipients are dropped
				targets = append(targets, target{u, d, c})
			}
		}
	}
	if n > maxToDeviceTargets {
		return nil, httpapi.InvalidParam("at most %d recipients per request", maxToDeviceTargets)
	}
	sort.Slice(targets, func(i, j int) bool {
		if targets[i].user != targets[j].user {
			return targets[i].user < targets[j].user
		}
		return targets[i].device < targets[j].device
	})
	woken := map[string]bool{}
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.TxnResult(ctx, req.UserID, req.DeviceID, "sendToDevice", txnID); err == nil {
			return nil // already done
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		for _, t := range targets {
			var devices []string
			if t.device == "*" {
				ds, err := s.db.ListDevices(ctx, t.user)
				if err != nil {
					return err
				}
				for _, d := range ds {
					devices = append(devices, d.DeviceID)
				}
			} else if _, err := s.db.GetDevice(ctx, t.user, t.device); err == nil {
				devices = []string{t.device}
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			for _, d := range devices {
				if _, err := tx.QueueToDevice(ctx, storage.ToDeviceMessage{UserID: t.user, DeviceID: d, Sender: req.UserID, Type: evType, Content: t.content}); err != nil {
					return err
				}
				woken[t.user] = true
			}
		}
		return tx.PutTxnResult(ctx, req.UserID, req.DeviceID, "sendToDevice", txnID, "{}", s.now().UnixMilli())
	})
	if err != nil {
		return nil, err
	}
	users := make([]string, 0, len(woken))
	for u := range woken {
		users = append(users, u)
	}
	s.notifier.WakeUsers(users...)
	return struct{}{}, nil
}
