package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// Wire format of raft v1.8.0's NetworkTransport (net_transport.go), which the outbound side still uses
// unchanged: a request is one type byte followed by a msgpack-encoded request struct (an InstallSnapshot
// request is followed by Size bytes of snapshot data); a response is a msgpack string (the error, "" for
// none) followed by the msgpack-encoded response struct. Requests on one connection are answered in order.
const (
	rpcAppendEntries   byte = 0
	rpcRequestVote     byte = 1
	rpcInstallSnapshot byte = 2
	rpcTimeoutNow      byte = 3
	rpcRequestPreVote  byte = 4
	// rpcVipdOp is vipd's own request (keyring operations forwarded to the leader); raft never sends it.
	rpcVipdOp byte = 0x76
)

const (
	// handshakeTimeout bounds one inbound handshake (TLS and key proof), so a silent stranger holds a
	// handshake slot for at most this long.
	handshakeTimeout = 5 * time.Second
	// maxHandshakes bounds concurrent inbound handshakes, and maxHandshakesPerIP those from one address, so
	// one stranger cannot take every slot; a connection beyond either is closed at once.
	maxHandshakes      = 64
	maxHandshakesPerIP = 8
	// rpcReadBuffer is the inbound read buffer (raft's own is 256 KiB for large AppendEntries batches).
	rpcReadBuffer = 256 << 10
)

// errRPCIdentity: an RPC's header names a node other than the one the connection authenticated.
var errRPCIdentity = errors.New("RPC header ID is not the authenticated node")

// opHandler serves vipd's own requests; it returns the response to encode.
type opHandler func(from string, req *opRequest) (*opResponse, error)

// rpcServer is the inbound side of the Raft transport. raft's NetworkTransport decodes inbound RPCs in its
// own connection handler, which cannot tell which connection an RPC came from, so vipd serves the inbound
// side itself: it authenticates each connection (peerAuth) off the accept loop, then decodes that
// connection's requests and hands them to raft through Consumer, refusing any RPC whose header ID is not a
// name the connection proved.
type rpcServer struct {
	ln      net.Listener
	auth    *peerAuth
	filter  *netFilter
	log     *slog.Logger
	refused *rateLog
	ops     opHandler

	consume chan raft.RPC
	done    chan struct{}

	slotMu sync.Mutex
	slots  int            // handshakes in progress
	perIP  map[string]int // handshakes in progress per peer IP

	hbMu      sync.Mutex
	heartbeat func(raft.RPC)

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newRPCServer(ln net.Listener, auth *peerAuth, filter *netFilter, log *slog.Logger, refused *rateLog, ops opHandler) *rpcServer {
	return &rpcServer{
		ln: ln, auth: auth, filter: filter, log: log, refused: refused, ops: ops,
		consume: make(chan raft.RPC),
		done:    make(chan struct{}),
		perIP:   map[string]int{},
		conns:   map[net.Conn]struct{}{},
	}
}

// start runs the accept loop until close.
func (s *rpcServer) start() {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.acceptLoop() }()
}

func (s *rpcServer) setHeartbeat(fn func(raft.RPC)) {
	s.hbMu.Lock()
	defer s.hbMu.Unlock()
	s.heartbeat = fn
}

func (s *rpcServer) heartbeatFn() func(raft.RPC) {
	s.hbMu.Lock()
	defer s.hbMu.Unlock()
	return s.heartbeat
}

// close stops accepting, closes every connection and waits for their goroutines.
func (s *rpcServer) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// track registers c for close; false if the server is closing.
func (s *rpcServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *rpcServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *rpcServer) acceptLoop() {
	backoff := time.Duration(0)
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				s.log.Error("raft accept", "err", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-s.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		addr := raw.RemoteAddr().String()
		if s.filter.isBlocked(addr) {
			raw.Close()
			continue
		}
		ip := hostOf(addr)
		if err := s.takeSlot(ip); err != nil {
			raw.Close()
			s.refused.refused(addr, "too many handshakes", err)
			continue
		}
		conn := s.filter.track(raw)
		if !s.track(conn) {
			s.releaseSlot(ip)
			conn.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(conn)
			defer conn.Close()
			s.handle(conn, addr)
		}()
	}
}

// takeSlot reserves a handshake slot for a connection from ip.
func (s *rpcServer) takeSlot(ip string) error {
	s.slotMu.Lock()
	defer s.slotMu.Unlock()
	if s.slots >= maxHandshakes {
		return fmt.Errorf("%d handshakes in progress", s.slots)
	}
	if s.perIP[ip] >= maxHandshakesPerIP {
		return fmt.Errorf("%d handshakes in progress from %s", s.perIP[ip], ip)
	}
	s.slots++
	s.perIP[ip]++
	return nil
}

func (s *rpcServer) releaseSlot(ip string) {
	s.slotMu.Lock()
	defer s.slotMu.Unlock()
	s.slots--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// handle authenticates one connection and serves its requests.
func (s *rpcServer) handle(raw net.Conn, addr string) {
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, names, err := s.auth.server(raw)
	s.releaseSlot(hostOf(addr))
	if err != nil {
		s.refused.refused(addr, refusalReason(err), err)
		return
	}
	// Closing raw (by the caller, or by close) ends this connection; a TLS close_notify is not needed.
	raw.SetDeadline(time.Time{})
	sc := &serverConn{s: s, conn: conn, addr: addr, names: names, insecure: s.auth.mode == ModeInsecure}
	if err := sc.serve(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		select {
		case <-s.done:
		default:
			var ie *identityError
			if errors.As(err, &ie) {
				s.refused.refused(addr, "RPC for another node", err)
				return
			}
			s.log.Debug("raft connection ended", "peer", addr, "err", err)
		}
	}
}

// identityError is a refused RPC whose header names another node.
type identityError struct {
	id    string
	names []string
}

func (e *identityError) Error() string {
	return fmt.Sprintf("%v: header ID %q, connection authenticated as %v", errRPCIdentity, e.id, e.names)
}

func (e *identityError) Unwrap() error { return errRPCIdentity }

// serverConn is one authenticated inbound connection.
type serverConn struct {
	s        *rpcServer
	conn     net.Conn
	addr     string
	names    []string // authenticated node names
	insecure bool     // no authentication: any header ID is accepted, as raft's own transport does
}

func (c *serverConn) serve() error {
	r := bufio.NewReaderSize(c.conn, rpcReadBuffer)
	w := bufio.NewWriter(c.conn)
	dec := codec.NewDecoder(r, &codec.MsgpackHandle{})
	// Responses are encoded as raft's transport encodes them (it sets TimeNotBuiltin unless configured for
	// the new time format), so the outbound NetworkTransport of any peer decodes them.
	mh := &codec.MsgpackHandle{}
	mh.TimeNotBuiltin = true
	enc := codec.NewEncoder(w, mh)
	for {
		typ, err := r.ReadByte()
		if err != nil {
			return err
		}
		more, err := c.one(typ, r, dec, enc)
		if err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("flush response: %w", err)
		}
		if !more {
			return nil
		}
	}
}

// one decodes, checks and serves one request; more is false when the connection must end after it.
func (c *serverConn) one(typ byte, r *bufio.Reader, dec *codec.Decoder, enc *codec.Encoder) (more bool, err error) {
	var cmd any
	var header raft.RPCHeader
	var reader io.Reader
	heartbeat := false
	more = true
	switch typ {
	case rpcAppendEntries:
		var req raft.AppendEntriesRequest
		if err := dec.Decode(&req); err != nil {
			return false, fmt.Errorf("decode AppendEntries: %w", err)
		}
		cmd, header = &req, req.RPCHeader
		heartbeat = isHeartbeat(&req)
	case rpcRequestVote:
		var req raft.RequestVoteRequest
		if err := dec.Decode(&req); err != nil {
			return false, fmt.Errorf("decode RequestVote: %w", err)
		}
		cmd, header = &req, req.RPCHeader
	case rpcRequestPreVote:
		var req raft.RequestPreVoteRequest
		if err := dec.Decode(&req); err != nil {
			return false, fmt.Errorf("decode RequestPreVote: %w", err)
		}
		cmd, header = &req, req.RPCHeader
	case rpcTimeoutNow:
		var req raft.TimeoutNowRequest
		if err := dec.Decode(&req); err != nil {
			return false, fmt.Errorf("decode TimeoutNow: %w", err)
		}
		cmd, header = &req, req.RPCHeader
	case rpcInstallSnapshot:
		var req raft.InstallSnapshotRequest
		if err := dec.Decode(&req); err != nil {
			return false, fmt.Errorf("decode InstallSnapshot: %w", err)
		}
		if req.Size < 0 {
			return false, fmt.Errorf("InstallSnapshot with negative size %d", req.Size)
		}
		cmd, header = &req, req.RPCHeader
		reader = io.LimitReader(r, req.Size)
		more = false // the sender closes the connection after a snapshot; so do we
	case rpcVipdOp:
		return true, c.op(dec, enc)
	default:
		return false, fmt.Errorf("unknown request type %d", typ)
	}
	if err := c.checkID(header.ID); err != nil {
		return false, err
	}

	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: cmd, Reader: reader, RespChan: respCh}
	if fn := c.s.heartbeatFn(); heartbeat && fn != nil {
		// raft's fast path: heartbeats skip the main loop so disk I/O cannot delay them.
		fn(rpc)
	} else {
		select {
		case c.s.consume <- rpc:
		case <-c.s.done:
			return false, raft.ErrTransportShutdown
		}
	}
	select {
	case resp := <-respCh:
		msg := ""
		if resp.Error != nil {
			msg = resp.Error.Error()
		}
		if err := enc.Encode(msg); err != nil {
			return false, fmt.Errorf("encode response: %w", err)
		}
		if err := enc.Encode(resp.Response); err != nil {
			return false, fmt.Errorf("encode response: %w", err)
		}
	case <-c.s.done:
		return false, raft.ErrTransportShutdown
	}
	return more, nil
}

// isHeartbeat is raft's own test for its heartbeat fast path: an AppendEntries that carries a term and a
// leader but no entries and no log position.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leader := req.Addr
	if len(leader) == 0 {
		//lint:ignore SA1019 raft's own test reads the deprecated field for old senders
		leader = req.Leader
	}
	return req.Term != 0 && leader != nil && req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// checkID refuses an RPC whose header ID is not one of the connection's authenticated names.
func (c *serverConn) checkID(id []byte) error {
	if c.insecure || slices.Contains(c.names, string(id)) {
		return nil
	}
	return &identityError{id: string(id), names: c.names}
}

// op serves a vipd request: decoded, handled, answered like an RPC.
func (c *serverConn) op(dec *codec.Decoder, enc *codec.Encoder) error {
	var req opRequest
	if err := dec.Decode(&req); err != nil {
		return fmt.Errorf("decode vipd request: %w", err)
	}
	from := ""
	if len(c.names) > 0 {
		from = c.names[0]
	}
	var resp *opResponse
	var err error
	if c.s.ops == nil || c.insecure {
		err = errors.New("vipd requests need an authenticated cluster")
	} else {
		resp, err = c.s.ops(from, &req)
	}
	if resp == nil {
		resp = &opResponse{}
	}
	msg := ""
	if err != nil {
		msg, resp.Code = err.Error(), opCode(err)
	}
	if err := enc.Encode(msg); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	if err := enc.Encode(resp); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return nil
}
