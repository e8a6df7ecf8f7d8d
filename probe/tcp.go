package probe

import (
	"context"
	"net"
	"time"
)

// probeTCP connects to the target and closes the connection: up when the
// connect succeeds.
func probeTCP(ctx context.Context, t Target, _ *Spec) Result {
	r := begin()
	conn, err := connect(ctx, "tcp", t, &r)
	if err != nil {
		return r.fail(err)
	}
	conn.Close()
	return r.up()
}

// connect dials t over network ("tcp" or "udp"), records the connect time as
// the Connect phase and the RTT, and gives the connection ctx's deadline so
// that every later read and write is bounded too.
func connect(ctx context.Context, network string, t Target, r *Result) (net.Conn, error) {
	var d net.Dialer
	start := time.Now()
	conn, err := d.DialContext(ctx, network, t.HostPort())
	if err != nil {
		return nil, during(stageConnect, ReasonError, err)
	}
	r.Phases.Connect = time.Since(start)
	r.RTT = r.Phases.Connect
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	return conn, nil
}
