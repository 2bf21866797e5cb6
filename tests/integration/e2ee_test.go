//go:build goolm

package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// cryptoClient is a mautrix client with end-to-end encryption (pure-Go
// goolm) syncing in the background.
type cryptoClient struct {
	t      *testing.T
	cli    *mautrix.Client
	helper *cryptohelper.CryptoHelper
	mach   *crypto.OlmMachine

	mu   sync.Mutex
	msgs []*event.Event
	news chan struct{}
}

// newCryptoClient sets up encryption for a logged-in client and starts
// syncing.
func newCryptoClient(t *testing.T, cli *mautrix.Client) *cryptoClient {
	t.Helper()
	ctx := context.Background()
	if os.Getenv("REMPART_TEST_CLIENT_LOG") != "" {
		cli.Log = zerolog.New(zerolog.NewTestWriter(t)).With().Str("user", cli.UserID.String()).Str("device", cli.DeviceID.String()).Logger()
	}
	path := filepath.Join(t.TempDir(), "crypto.db")
	db, err := dbutil.NewWithDialect("file:"+path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate", "sqlite")
	if err != nil {
		t.Fatalf("crypto db: %v", err)
	}
	helper, err := cryptohelper.NewCryptoHelper(cli, []byte("test pickle key"), db)
	if err != nil {
		t.Fatalf("crypto helper: %v", err)
	}
	if err := helper.Init(ctx); err != nil {
		t.Fatalf("crypto init: %v", err)
	}
	cli.Crypto = helper
	c := &cryptoClient{t: t, cli: cli, helper: helper, mach: helper.Machine(), news: make(chan struct{}, 1)}
	syncer := cli.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.EventMessage, func(ctx context.Context, evt *event.Event) {
		c.mu.Lock()
		c.msgs = append(c.msgs, evt)
		c.mu.Unlock()
		select {
		case c.news <- struct{}{}:
		default:
		}
	})
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sctx.Err() == nil {
			if err := cli.SyncWithContext(sctx); err != nil && sctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = helper.Close()
	})
	return c
}

// waitMessage waits until the client has received (and decrypted) a
// message with the given body in roomID.
func (c *cryptoClient) waitMessage(roomID id.RoomID, body string) *event.Event {
	c.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		for _, ev := range c.msgs {
			if ev.RoomID == roomID && ev.Content.AsMessage().Body == body {
				c.mu.Unlock()
				if !ev.Mautrix.WasEncrypted {
					c.t.Fatalf("%s received %q unencrypted", c.cli.UserID, body)
				}
				return ev
			}
		}
		c.mu.Unlock()
		select {
		case <-c.news:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			c.t.Fatalf("%s/%s did not receive %q", c.cli.UserID, c.cli.DeviceID, body)
		}
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMembers waits until the client's state store knows the room is
// encrypted and has the given users joined.
func (c *cryptoClient) waitMembers(roomID id.RoomID, users ...id.UserID) {
	c.t.Helper()
	ctx := context.Background()
	waitFor(c.t, "room state in "+c.cli.UserID.String()+"'s store", func() bool {
		enc, _ := c.cli.StateStore.IsEncrypted(ctx, roomID)
		if !enc {
			return false
		}
		members, _ := c.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, roomID)
		have := map[id.UserID]bool{}
		for _, m := range members {
			have[m] = true
		}
		for _, u := range users {
			if !have[u] {
				return false
			}
		}
		return true
	})
}

// encryptedRoom makes alice create an encrypted room and bob join it.
func encryptedRoom(t *testing.T, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	ctx := context.Background()
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{bob.UserID},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}},
	})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatalf("join: %v", err)
	}
	return room.RoomID
}

// assertNoPlaintext fails if any of the secrets appears anywhere the
// server stores events, to-device messages or backups.
func assertNoPlaintext(t *testing.T, srv *testserver.Server, secrets ...string) {
	t.Helper()
	dsn := srv.Config.DatabaseURL()
	driver := "sqlite"
	if testserver.Backend() == "postgres" {
		driver = "pgx"
	} else {
		dsn = "file:" + dsn + "?_pragma=query_only(1)"
		// The raw database files, write-ahead log included.
		files, _ := filepath.Glob(srv.Config.DatabaseURL() + "*")
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatalf("read %s: %v", f, err)
			}
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Fatalf("database file %s contains the plaintext %q", filepath.Base(f), s)
				}
			}
		}
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	defer db.Close()
	for _, q := range []string{`SELECT json FROM events`, `SELECT unsigned FROM events`, `SELECT content FROM e2e_to_device`,
		`SELECT session_data FROM e2e_backup_sessions`, `SELECT content FROM account_data`} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		n := 0
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatalf("scan: %v", err)
			}
			n++
			for _, sec := range secrets {
				if strings.Contains(s, sec) {
					rows.Close()
					t.Fatalf("%s: the database holds the plaintext %q", q, sec)
				}
			}
		}
		rows.Close()
		if q == `SELECT json FROM events` && n == 0 {
			t.Fatalf("no events read: the check would prove nothing")
		}
	}
}

func TestE2EEMessagesBothWaysAndSecondDevice(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := newCryptoClient(t, srv.RegisterUser("alice"))
	bob := newCryptoClient(t, srv.RegisterUser("bob"))
	roomID := encryptedRoom(t, alice.cli, bob.cli)
	alice.waitMembers(roomID, alice.cli.UserID, bob.cli.UserID)
	bob.waitMembers(roomID, alice.cli.UserID, bob.cli.UserID)

	secret1 := "the eagle lands at dawn " + testserver.UniqueName("s")
	if _, err := alice.cli.SendText(ctx, roomID, secret1); err != nil {
		t.Fatalf("alice send: %v", err)
	}
	bob.waitMessage(roomID, secret1)

	secret2 := "understood, the nest is ready " + testserver.UniqueName("s")
	if _, err := bob.cli.SendText(ctx, roomID, secret2); err != nil {
		t.Fatalf("bob send: %v", err)
	}
	alice.waitMessage(roomID, secret2)

	// Bob's second device reads new messages once Alice's client learns of
	// it through device_lists.changed.
	bob2 := newCryptoClient(t, srv.Login(bob.cli.UserID))
	waitFor(t, "alice to see bob's second device", func() bool {
		devs, err := alice.mach.CryptoStore.GetDevices(ctx, bob.cli.UserID)
		return err == nil && devs[bob2.cli.DeviceID] != nil
	})
	bob2.waitMembers(roomID, alice.cli.UserID, bob.cli.UserID)
	secret3 := "second device check " + testserver.UniqueName("s")
	if _, err := alice.cli.SendText(ctx, roomID, secret3); err != nil {
		t.Fatalf("alice send: %v", err)
	}
	bob2.waitMessage(roomID, secret3)
	bob.waitMessage(roomID, secret3)

	assertNoPlaintext(t, srv, secret1, secret2, secret3)
}

func TestE2EECrossSigning(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := newCryptoClient(t, srv.RegisterUser("alice"))
	bob := newCryptoClient(t, srv.RegisterUser("bob"))
	roomID := encryptedRoom(t, alice.cli, bob.cli)
	alice.waitMembers(roomID, bob.cli.UserID)

	// Bob bootstraps cross-signing (first upload: no UIA needed) and signs
	// his device and master key.
	if _, err := bob.mach.GenerateAndVerifyWithRecoveryKey(ctx); err != nil {
		t.Fatalf("bob bootstrap cross-signing: %v", err)
	}
	// Alice's client learns of the change and sees Bob's device as
	// cross-signed (trust on first use of Bob's master key).
	waitFor(t, "alice to see bob's device as cross-signed", func() bool {
		dev, err := alice.mach.GetOrFetchDevice(ctx, bob.cli.UserID, bob.cli.DeviceID)
		if err != nil {
			return false
		}
		trust, err := alice.mach.ResolveTrustContext(ctx, dev)
		return err == nil && trust == id.TrustStateCrossSignedTOFU
	})

	// Alice bootstraps hers and signs Bob's master key with her
	// user-signing key: Bob's device becomes verified for her.
	if _, err := alice.mach.GenerateAndVerifyWithRecoveryKey(ctx); err != nil {
		t.Fatalf("alice bootstrap cross-signing: %v", err)
	}
	bobKeys, err := alice.mach.GetCrossSigningPublicKeys(ctx, bob.cli.UserID)
	if err != nil || bobKeys == nil {
		t.Fatalf("bob's cross-signing keys: %v", err)
	}
	if err := alice.mach.SignUser(ctx, bob.cli.UserID, bobKeys.MasterKey); err != nil {
		t.Fatalf("sign bob: %v", err)
	}
	// The server now shows Alice's signature on Bob's master key to Alice
	// only, and Bob's user-signing key to Bob only.
	resp, err := alice.cli.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.cli.UserID: {}, alice.cli.UserID: {}}})
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	aliceKeys, _ := alice.mach.GetOwnCrossSigningPublicKeys(ctx)
	if sigs := resp.MasterKeys[bob.cli.UserID].Signatures[alice.cli.UserID]; sigs == nil || sigs[id.NewKeyID(id.KeyAlgorithmEd25519, aliceKeys.UserSigningKey.String())] == "" {
		t.Fatalf("alice does not see her signature on bob's master key: %+v", resp.MasterKeys[bob.cli.UserID])
	}
	if _, ok := resp.UserSigningKeys[bob.cli.UserID]; ok {
		t.Fatalf("alice sees bob's user-signing key")
	}
	if _, ok := resp.UserSigningKeys[alice.cli.UserID]; !ok {
		t.Fatalf("alice does not see her own user-signing key")
	}
	resp, err = bob.cli.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.cli.UserID: {}}})
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if sigs := resp.MasterKeys[bob.cli.UserID].Signatures[alice.cli.UserID]; len(sigs) > 0 {
		t.Fatalf("bob sees alice's private signature on his master key")
	}
	dev, err := alice.mach.GetOrFetchDevice(ctx, bob.cli.UserID, bob.cli.DeviceID)
	if err != nil {
		t.Fatalf("fetch bob's device: %v", err)
	}
	waitFor(t, "bob's device verified for alice", func() bool {
		trust, err := alice.mach.ResolveTrustContext(ctx, dev)
		return err == nil && trust == id.TrustStateCrossSignedVerified
	})

	// Replacing the master key now requires the password (UIA).
	keys, err := bob.mach.GenerateCrossSigningKeys()
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	err = bob.mach.PublishCrossSigningKeys(ctx, keys, nil)
	if err == nil {
		t.Fatalf("replacing cross-signing keys without authentication succeeded")
	}
	err = bob.mach.PublishCrossSigningKeys(ctx, keys, func(ui *mautrix.RespUserInteractive) any {
		return &mautrix.ReqUIAuthLogin{BaseAuthData: mautrix.BaseAuthData{Type: mautrix.AuthTypePassword, Session: ui.Session},
			User: bob.cli.UserID.String(), Password: testserver.Password}
	})
	if err != nil {
		t.Fatalf("replace cross-signing keys with the password: %v", err)
	}
}

func TestE2EEKeyBackupRestoresHistory(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := newCryptoClient(t, srv.RegisterUser("alice"))
	bob := newCryptoClient(t, srv.RegisterUser("bob"))
	roomID := encryptedRoom(t, alice.cli, bob.cli)
	alice.waitMembers(roomID, bob.cli.UserID)
	bob.waitMembers(roomID, alice.cli.UserID)

	secret := "history worth keeping " + testserver.UniqueName("s")
	sent, err := alice.cli.SendText(ctx, roomID, secret)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	bob.waitMessage(roomID, secret)

	// Bob backs up the room key, encrypted to a backup key only he holds.
	backupKey, err := backup.NewMegolmBackupKey()
	if err != nil {
		t.Fatalf("backup key: %v", err)
	}
	authData := backup.MegolmAuthData{PublicKey: id.Ed25519(base64.RawStdEncoding.EncodeToString(backupKey.PublicKey().Bytes()))}
	ver, err := bob.cli.CreateKeyBackupVersion(ctx, &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{Algorithm: id.KeyBackupAlgorithmMegolmBackupV1, AuthData: authData})
	if err != nil {
		t.Fatalf("create backup version: %v", err)
	}
	var enc event.EncryptedEventContent
	raw, err := bob.cli.GetEvent(ctx, roomID, sent.EventID)
	if err != nil {
		t.Fatalf("get event: %v", err)
	}
	if err := json.Unmarshal(raw.Content.VeryRaw, &enc); err != nil {
		t.Fatalf("encrypted content: %v", err)
	}
	igs, err := bob.mach.CryptoStore.GetGroupSession(ctx, roomID, enc.SessionID)
	if err != nil || igs == nil {
		t.Fatalf("bob's inbound session: %v", err)
	}
	exported, err := igs.Internal.Export(igs.Internal.FirstKnownIndex())
	if err != nil {
		t.Fatalf("export session: %v", err)
	}
	data, err := backup.EncryptSessionData(backupKey, backup.MegolmSessionData{
		Algorithm: id.AlgorithmMegolmV1, SenderKey: igs.SenderKey, SessionKey: string(exported),
		SenderClaimedKeys: backup.SenderClaimedKeys{Ed25519: igs.SigningKey}, ForwardingKeyChain: []string{},
	})
	if err != nil {
		t.Fatalf("encrypt session data: %v", err)
	}
	dataJSON, _ := json.Marshal(data)
	up, err := bob.cli.PutKeysInBackup(ctx, ver.Version, &mautrix.ReqKeyBackup{Rooms: map[id.RoomID]mautrix.ReqRoomKeyBackup{
		roomID: {Sessions: map[id.SessionID]mautrix.ReqKeyBackupData{enc.SessionID: {FirstMessageIndex: int(igs.Internal.FirstKnownIndex()), SessionData: dataJSON}}},
	}})
	if err != nil {
		t.Fatalf("upload backup: %v", err)
	}
	if up.Count != 1 {
		t.Fatalf("backup count %d, want 1", up.Count)
	}

	// A fresh login of Bob, with only the backup key, restores the room
	// key and decrypts the old message.
	bob3 := newCryptoClient(t, srv.Login(bob.cli.UserID))
	version, err := bob3.mach.DownloadAndStoreLatestKeyBackup(ctx, backupKey)
	if err != nil {
		t.Fatalf("restore backup: %v", err)
	}
	if version != ver.Version {
		t.Fatalf("restored version %s, want %s", version, ver.Version)
	}
	old, err := bob3.cli.GetEvent(ctx, roomID, sent.EventID)
	if err != nil {
		t.Fatalf("get event: %v", err)
	}
	if err := old.Content.ParseRaw(old.Type); err != nil {
		t.Fatalf("parse: %v", err)
	}
	dec, err := bob3.mach.DecryptMegolmEvent(ctx, old)
	if err != nil {
		t.Fatalf("decrypt history with the restored key: %v", err)
	}
	if dec.Content.AsMessage().Body != secret {
		t.Fatalf("decrypted %q, want %q", dec.Content.AsMessage().Body, secret)
	}
	assertNoPlaintext(t, srv, secret)
}
