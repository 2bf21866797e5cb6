// Package clamdtest starts a private ClamAV daemon for tests: its own
// configuration, a Unix socket in a temporary directory, and a signature
// database holding only a test signature for the EICAR test string (no
// signature download is possible or needed). clamd comes from Debian's
// clamav-daemon package (scripts/clamav.sh installs it). When clamd is
// missing or does not start, tests fail if CI=true and skip otherwise.
package clamdtest

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EICAR is the standard antivirus test file.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// Signature is the name clamd reports for EICAR with the test database.
const Signature = "Rempart.Test.EICAR"

// unavailable fails the test on CI and skips it elsewhere.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("antivirus test cannot run: %s (run scripts/clamav.sh)", msg)
	}
	t.Skipf("antivirus test skipped: %s (run scripts/clamav.sh to install clamav-daemon)", msg)
}

// Start runs a private clamd until the test ends and returns its address
// for media.antivirus.clamd ("unix:/…/clamd.sock").
func Start(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("clamd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/clamd"); serr == nil {
			bin = "/usr/sbin/clamd"
		} else {
			unavailable(t, "clamd is not installed")
		}
	}
	// Unix socket paths are limited to ~108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "clamd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	// A body signature: the EICAR marker anywhere in the content.
	sig := fmt.Sprintf("%s:0:*:%s\n", Signature, hex.EncodeToString([]byte("$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!")))
	if err := os.WriteFile(filepath.Join(db, "rempart-test.ndb"), []byte(sig), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "clamd.sock")
	conf := strings.Join([]string{
		"LocalSocket " + sock,
		"DatabaseDirectory " + db,
		"TemporaryDirectory " + dir,
		"LogFile " + filepath.Join(dir, "clamd.log"),
		"Foreground yes",
		"StreamMaxLength 100M",
		"MaxThreads 4",
		"",
	}, "\n")
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+confPath)
	if err := cmd.Start(); err != nil {
		unavailable(t, "start clamd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.log"))
			unavailable(t, "clamd exited: %v\n%s", err, log)
		default:
		}
		if ping(sock) {
			return "unix:" + sock
		}
		time.Sleep(100 * time.Millisecond)
	}
	unavailable(t, "clamd did not answer within 60s")
	return ""
}

func ping(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("zPING\x00")); err != nil {
		return false
	}
	reply, _ := bufio.NewReader(c).ReadString(0)
	return strings.TrimRight(reply, "\x00") == "PONG"
}
