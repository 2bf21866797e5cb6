package media

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/rempart-hs/rempart/internal/audit"
	"github.com/rempart-hs/rempart/internal/config"
)

// Clamd scans content with a ClamAV daemon over its INSTREAM command.
type Clamd struct {
	network, addr string
	timeout       time.Duration
}

// NewClamd returns a client for a clamd address (unix:/path or
// tcp://host:port).
func NewClamd(address string, timeout time.Duration) (*Clamd, error) {
	network, addr, err := config.ClamdAddress(address)
	if err != nil {
		return nil, err
	}
	return &Clamd{network: network, addr: addr, timeout: timeout}, nil
}

// Verdict is the result of one scan.
type Verdict struct {
	Clean bool
	// Signature names what was found when not clean.
	Signature string
}

// ErrScannerUnavailable wraps every failure to obtain a verdict.
var ErrScannerUnavailable = errors.New("antivirus scanner unavailable")

const clamdChunk = 64 << 10

// Scan streams r to clamd and returns its verdict. Any failure to get one
// (connection, timeout, clamd error such as its stream size limit) is an
// error wrapping ErrScannerUnavailable: callers fail closed on it.
func (c *Clamd) Scan(ctx context.Context, r io.Reader) (Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return Verdict{}, fmt.Errorf("%w: %v", ErrScannerUnavailable, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	w := bufio.NewWriterSize(conn, clamdChunk+4)
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		return Verdict{}, fmt.Errorf("%w: %v", ErrScannerUnavailable, err)
	}
	buf := make([]byte, clamdChunk)
	var hdr [4]byte
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			if _, err := w.Write(hdr[:]); err != nil {
				return afterWriteErr(conn, err)
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return afterWriteErr(conn, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return Verdict{}, fmt.Errorf("read content to scan: %w", rerr)
		}
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	if _, err := w.Write(hdr[:]); err != nil {
		return afterWriteErr(conn, err)
	}
	if err := w.Flush(); err != nil {
		return afterWriteErr(conn, err)
	}
	return readVerdict(conn)
}

// afterWriteErr reads the reply clamd may have sent before closing the
// stream (it stops reading at its size limit); without a verdict the scan
// failed.
func afterWriteErr(conn net.Conn, err error) (Verdict, error) {
	if v, rerr := readVerdict(conn); rerr != nil {
		return Verdict{}, rerr
	} else if !v.Clean {
		return v, nil
	}
	return Verdict{}, fmt.Errorf("%w: %v", ErrScannerUnavailable, err)
}

func readVerdict(conn net.Conn) (Verdict, error) {
	reply, err := bufio.NewReader(io.LimitReader(conn, 4096)).ReadString(0)
	if err != nil && reply == "" {
		return Verdict{}, fmt.Errorf("%w: no reply: %v", ErrScannerUnavailable, err)
	}
	reply = strings.TrimRight(reply, "\x00\n")
	body := strings.TrimPrefix(reply, "stream: ")
	switch {
	case body == "OK":
		return Verdict{Clean: true}, nil
	case strings.HasSuffix(body, " FOUND"):
		return Verdict{Signature: strings.TrimSuffix(body, " FOUND")}, nil
	}
	return Verdict{}, fmt.Errorf("%w: clamd replied %q", ErrScannerUnavailable, reply)
}

// Ping checks that clamd answers.
func (c *Clamd) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString(0)
	if err != nil {
		return err
	}
	if strings.TrimRight(reply, "\x00") != "PONG" {
		return fmt.Errorf("clamd replied %q", reply)
	}
	return nil
}

// auditInfected records a refused infected upload or attachment in the
// audit log: who, the content's hash and the signature found, never the
// content. It is the one place such refusals are reported.
func (s *Service) auditInfected(ctx context.Context, userID, contentHash, signature, where string) {
	slog.WarnContext(ctx, "media: infected content refused", "user", userID, "sha256", contentHash, "signature", signature, "endpoint", where)
	_ = s.audit.Record(ctx, audit.Entry{Actor: userID, Action: "media.infected", Target: "sha256:" + contentHash,
		Details: map[string]any{"signature": signature, "endpoint": where}})
}
