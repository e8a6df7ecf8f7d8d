package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// sslRequest is PostgreSQL's SSLRequest message: length 8, then the code
// 80877103 (1234 in the high 16 bits, 5679 in the low), big-endian.
var sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

// probePostgres asks a PostgreSQL server for TLS with an SSLRequest and,
// when it answers 'S', completes a mutual-TLS handshake (what pg_hba's
// "hostssl ... cert" demands) and closes cleanly without logging in.
func probePostgres(ctx context.Context, t Target, s *Spec) Result {
	r := begin()
	conn, err := connect(ctx, "tcp", t, &r)
	if err != nil {
		return r.fail(err)
	}
	defer conn.Close()
	ssl, err := askSSL(conn, &r)
	if err != nil {
		return r.fail(err)
	}
	if !ssl {
		return r.down(ReasonPostgresNoSSL, "postgres: ssl not supported")
	}
	cfg, err := s.clientTLS(t, "postgresql")
	if err != nil {
		return r.fail(err)
	}
	tc, err := handshake(ctx, conn, cfg, &r)
	if err == nil {
		deadline, _ := ctx.Deadline()
		_, err = awaitVerdict(tc, cfg, r.RTT, deadline)
	}
	if err != nil {
		return r.fail(err)
	}
	tc.Close()
	return r.up()
}

// askSSL sends the SSLRequest and reads the one-byte answer: true for 'S',
// false for 'N'. It records the wait as the FirstByte phase.
func askSSL(conn net.Conn, r *Result) (bool, error) {
	start := time.Now()
	if _, err := conn.Write(sslRequest); err != nil {
		return false, during(stageSSL, ReasonPostgresError, err)
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("server closed the connection")
		}
		return false, during(stageSSL, ReasonPostgresError, err)
	}
	r.Phases.FirstByte = time.Since(start)
	switch b[0] {
	case 'S':
		return true, nil
	case 'N':
		return false, nil
	case 'E':
		return false, during(stageSSL, ReasonPostgresError, errors.New("server answered with an error message"))
	}
	return false, during(stageSSL, ReasonPostgresError, fmt.Errorf("unexpected answer %q", b[0]))
}
