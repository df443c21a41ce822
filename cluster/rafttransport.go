package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftTransport is the authenticated Raft transport: raft's own NetworkTransport for every outbound call
// (AppendEntries and its pipeline, RequestVote, RequestPreVote, InstallSnapshot, TimeoutNow), dialing
// through dialLayer, which authenticates each new connection before raft writes a byte; and vipd's
// rpcServer for the inbound side, whose requests reach raft through Consumer.
type raftTransport struct {
	*raft.NetworkTransport
	srv  *rpcServer
	dial *dialLayer
	acks *ackLog // acknowledged AppendEntries, for the lease proof (lease.go)
}

// AppendEntries sends one AppendEntries (raft's heartbeats and non-pipelined replication come through here)
// and records, when the peer acknowledged it in the request's term, when it was sent.
func (t *raftTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest,
	resp *raft.AppendEntriesResponse) error {
	sent := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Success && resp.Term == args.Term {
		t.acks.record(id, args.Term, sent)
	}
	return err
}

var (
	_ raft.Transport   = (*raftTransport)(nil)
	_ raft.WithPreVote = (*raftTransport)(nil)
	_ raft.WithClose   = (*raftTransport)(nil)
)

// Consumer returns the inbound RPCs of authenticated peers.
func (t *raftTransport) Consumer() <-chan raft.RPC { return t.srv.consume }

// SetHeartbeatHandler installs raft's heartbeat fast path on the inbound side.
func (t *raftTransport) SetHeartbeatHandler(cb func(raft.RPC)) { t.srv.setHeartbeat(cb) }

// keepSpares keeps a warm authenticated connection to each of addrs (spares.go).
func (t *raftTransport) keepSpares(addrs []string) { t.dial.spares.keep(addrs, time.Now()) }

// Close stops both sides; raft calls it on shutdown.
func (t *raftTransport) Close() error {
	err := t.srv.close()
	return errors.Join(err, t.NetworkTransport.Close())
}

// newRaftTransport listens on bind and returns the transport; its server is running.
func newRaftTransport(bind string, advertise *net.TCPAddr, auth *peerAuth, filter *netFilter, local *net.TCPAddr,
	log *slog.Logger, hlog *hclogAdapter, refused *rateLog, ops opHandler) (*raftTransport, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, listenErr("raft", bind, err)
	}
	srv := newRPCServer(ln, auth, filter, log, refused, ops)
	dl := &dialLayer{auth: auth, filter: filter, local: local, advertise: advertise, closed: make(chan struct{})}
	dl.spares = newSpares(func(ctx context.Context, addr string) (net.Conn, error) {
		conn, _, err := dialAuthenticated(ctx, auth, filter, local, addr)
		return conn, err
	})
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  dl,
		MaxPool: 3,
		Timeout: raftRPCTimeout,
		Logger:  hlog.Named("transport"),
	})
	srv.start()
	return &raftTransport{NetworkTransport: nt, srv: srv, dial: dl, acks: newAckLog()}, nil
}

// dialLayer is the outbound StreamLayer of raft's NetworkTransport: Dial authenticates (peerAuth.client)
// before handing the connection to raft, and Accept blocks until Close, because rpcServer owns the inbound
// side.
type dialLayer struct {
	auth      *peerAuth
	filter    *netFilter
	local     *net.TCPAddr // source address for dials when filtering, so peers see our IP
	advertise net.Addr
	spares    *spares // nil: every Dial dials

	closeOnce sync.Once
	closed    chan struct{}
}

var _ raft.StreamLayer = (*dialLayer)(nil)

// Accept blocks until Close: no connection is ever accepted here.
func (d *dialLayer) Accept() (net.Conn, error) {
	<-d.closed
	return nil, net.ErrClosed
}

// Close unblocks Accept and closes the spares.
func (d *dialLayer) Close() error {
	d.closeOnce.Do(func() {
		close(d.closed)
		if d.spares != nil {
			d.spares.close()
		}
	})
	return nil
}

// Addr is the advertised Raft address.
func (d *dialLayer) Addr() net.Addr { return d.advertise }

// Dial hands over the warm spare to addr if there is a live one, else connects to addr and authenticates
// the server within timeout.
func (d *dialLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if d.filter.isBlocked(string(addr)) {
		return nil, fmt.Errorf("dial %s: %w", addr, errBlocked)
	}
	if d.spares != nil {
		if c := d.spares.take(string(addr)); c != nil {
			return c, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, _, err := dialAuthenticated(ctx, d.auth, d.filter, d.local, string(addr))
	return conn, err
}

// dialAuthenticated dials addr and runs the client handshake, bounded by ctx; it returns the connection and
// the names the server proved.
func dialAuthenticated(ctx context.Context, auth *peerAuth, filter *netFilter, local *net.TCPAddr, addr string) (net.Conn, []string, error) {
	if filter.isBlocked(addr) {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, errBlocked)
	}
	var dl net.Dialer
	if filter != nil {
		dl.LocalAddr = local
	}
	raw, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	raw = filter.track(raw)
	if d, ok := ctx.Deadline(); ok {
		raw.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() }) // cancellation ends the handshake too
	conn, names, err := auth.client(raw)
	if !stop() || err != nil {
		raw.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, nil, fmt.Errorf("raft handshake with %s: %w", addr, err)
	}
	raw.SetDeadline(time.Time{})
	return conn, names, nil
}

// raftBind is the Raft listen address.
func raftBind(cfg Config) string { return net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.RaftPort)) }
