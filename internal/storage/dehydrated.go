package storage

import (
	"context"
	"database/sql"
	"encoding/json"
)

// DehydratedDevice is a user's dehydrated device (MSC3814): a device with
// no access token whose keys and to-device queue live with every other
// device's, plus the client's opaque, encrypted device_data.
type DehydratedDevice struct {
	UserID     string
	DeviceID   string
	DeviceData json.RawMessage
	CreatedTS  int64
}

// DehydratedDevice returns the user's dehydrated device, or ErrNotFound.
func (db *DB) DehydratedDevice(ctx context.Context, userID string) (DehydratedDevice, error) {
	return dehydratedDevice(db.queryRow(ctx, `SELECT user_id, device_id, device_data, created_ts FROM dehydrated_devices WHERE user_id = ?`, userID))
}

// DehydratedDevice is DB.DehydratedDevice inside the transaction (lock
// the user first to serialise replacements).
func (tx *Tx) DehydratedDevice(ctx context.Context, userID string) (DehydratedDevice, error) {
	return dehydratedDevice(tx.queryRow(ctx, `SELECT user_id, device_id, device_data, created_ts FROM dehydrated_devices WHERE user_id = ?`, userID))
}

func dehydratedDevice(row *sql.Row) (DehydratedDevice, error) {
	var d DehydratedDevice
	var data string
	err := row.Scan(&d.UserID, &d.DeviceID, &data, &d.CreatedTS)
	d.DeviceData = json.RawMessage(data)
	return d, notFound(err)
}

// PutDehydratedDevice marks a device as the user's dehydrated device with
// its data, replacing any previous mark. The device row itself is created
// with UpsertDevice; DeleteDeviceE2EE removes the mark with the device.
func (tx *Tx) PutDehydratedDevice(ctx context.Context, d DehydratedDevice) error {
	_, err := tx.exec(ctx, `INSERT INTO dehydrated_devices (user_id, device_id, device_data, created_ts) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_data = excluded.device_data, created_ts = excluded.created_ts`,
		d.UserID, d.DeviceID, string(d.DeviceData), d.CreatedTS)
	return err
}

// DeviceExists reports whether the user has a device with this ID.
func (tx *Tx) DeviceExists(ctx context.Context, userID, deviceID string) (bool, error) {
	var n int
	err := tx.queryRow(ctx, `SELECT COUNT(*) FROM devices WHERE user_id = ? AND device_id = ?`, userID, deviceID).Scan(&n)
	return n > 0, err
}

// ToDeviceMessagesBetween returns up to limit of a device's queued
// messages with after < stream_pos <= upTo, in order.
func (db *DB) ToDeviceMessagesBetween(ctx context.Context, userID, deviceID string, after, upTo int64, limit int) ([]ToDeviceMessage, error) {
	rows, err := db.query(ctx, `SELECT stream_pos, user_id, device_id, sender, type, content FROM e2e_to_device
		WHERE user_id = ? AND device_id = ? AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos LIMIT ?`, userID, deviceID, after, upTo, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ToDeviceMessage
	for rows.Next() {
		var m ToDeviceMessage
		var c string
		if err := rows.Scan(&m.StreamPos, &m.UserID, &m.DeviceID, &m.Sender, &m.Type, &c); err != nil {
			return nil, err
		}
		m.Content = json.RawMessage(c)
		out = append(out, m)
	}
	return out, rows.Err()
}
