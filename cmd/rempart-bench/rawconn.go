package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// rawConn is one keep-alive HTTP/1.1 connection owned by one sender of the
// send scenario, which writes each request and reads each answer itself.
// The benchmark shares the machine's cores with the server, and net/http's
// client spent about 75 µs of CPU per send (two goroutines per connection
// handing each request and answer over, a header map per request and per
// answer): CPU the server could not have. This does one write and one or
// two reads per send. It speaks only what the send scenario needs: PUT with
// a JSON body over plain HTTP, answers framed by Content-Length or chunked.
type rawConn struct {
	addr, host string
	timeout    time.Duration
	conn       net.Conn
	br         *bufio.Reader
	req        []byte
	body       []byte
}

// newRawConn returns a connection to base's host (nil when base is not
// plain http: the scenario then uses the net/http client).
func newRawConn(base string, timeout time.Duration) *rawConn {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	return &rawConn{addr: addr, host: u.Host, timeout: timeout}
}

func (r *rawConn) close() {
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn = nil
	}
}

// put sends PUT path with the JSON body and returns the answer's status and
// body (valid until the next call). A connection the server closed while
// idle is reopened and the request sent again: the scenario's PUTs carry a
// transaction ID, so sending one twice is safe.
func (r *rawConn) put(ctx context.Context, path, token string, body []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		reused := r.conn != nil
		status, resp, err := r.roundTrip(ctx, path, token, body)
		if err == nil {
			return status, resp, nil
		}
		r.close()
		if !reused || attempt > 0 || ctx.Err() != nil {
			return 0, nil, err
		}
	}
}

func (r *rawConn) roundTrip(ctx context.Context, path, token string, body []byte) (int, []byte, error) {
	if r.conn == nil {
		d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		c, err := d.DialContext(ctx, "tcp", r.addr)
		if err != nil {
			return 0, nil, err
		}
		r.conn, r.br = c, bufio.NewReaderSize(c, 4096)
	}
	deadline := time.Now().Add(r.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := r.conn.SetDeadline(deadline); err != nil {
		return 0, nil, err
	}
	q := r.req[:0]
	q = append(q, "PUT "...)
	q = append(q, path...)
	q = append(q, " HTTP/1.1\r\nHost: "...)
	q = append(q, r.host...)
	q = append(q, "\r\nUser-Agent: rempart-bench\r\nContent-Type: application/json\r\nAuthorization: Bearer "...)
	q = append(q, token...)
	q = append(q, "\r\nContent-Length: "...)
	q = strconv.AppendInt(q, int64(len(body)), 10)
	q = append(q, "\r\n\r\n"...)
	q = append(q, body...)
	r.req = q
	if _, err := r.conn.Write(q); err != nil {
		return 0, nil, err
	}
	return r.readResponse()
}

// readResponse reads one HTTP/1.1 answer.
func (r *rawConn) readResponse() (int, []byte, error) {
	line, err := r.readLine()
	if err != nil {
		return 0, nil, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, fmt.Errorf("malformed status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("malformed status line %q", line)
	}
	length, chunked, closeAfter := -1, false, false
	for {
		h, err := r.readLine()
		if err != nil {
			return 0, nil, err
		}
		if len(h) == 0 {
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon < 0 {
			continue
		}
		name, value := h[:colon], bytes.TrimSpace(h[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, fmt.Errorf("malformed Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closeAfter = bytes.EqualFold(value, []byte("close"))
		}
	}
	r.body = r.body[:0]
	switch {
	case chunked:
		err = r.readChunked()
	case length >= 0:
		if cap(r.body) < length {
			r.body = make([]byte, length)
		}
		r.body = r.body[:length]
		_, err = io.ReadFull(r.br, r.body)
	default:
		// Framed by closing the connection.
		r.body, err = io.ReadAll(r.br)
		closeAfter = true
	}
	if err != nil {
		return 0, nil, err
	}
	if closeAfter {
		r.close()
	}
	return status, r.body, nil
}

func (r *rawConn) readChunked() error {
	for {
		line, err := r.readLine()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("malformed chunk size %q", line)
		}
		if n == 0 {
			// Trailers, then the empty line.
			for {
				t, err := r.readLine()
				if err != nil {
					return err
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		start := len(r.body)
		r.body = append(r.body, make([]byte, n)...)
		if _, err := io.ReadFull(r.br, r.body[start:]); err != nil {
			return err
		}
		if crlf, err := r.readLine(); err != nil || len(crlf) != 0 {
			return errors.New("malformed chunk end")
		}
	}
}

// readLine returns the next line without its CRLF (valid until the next
// read).
func (r *rawConn) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("header line too long")
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// sendRaw is client.send over r.
func (r *rawConn) sendRaw(ctx context.Context, u *user, roomID, txnID string, body []byte) error {
	status, resp, err := r.put(ctx, sendPath(roomID, txnID), u.Token, body)
	if err != nil {
		return err
	}
	return answerError(status, resp)
}
