package cluster

import (
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// benchAuth returns the server and client handshakes of mode for the handshake benchmark.
func benchAuth(b *testing.B, mode SecurityMode) (server, client *peerAuth) {
	b.Helper()
	keys := func() [][]byte { return [][]byte{testKey} }
	switch mode {
	case ModeInsecure:
		return &peerAuth{mode: mode}, &peerAuth{mode: mode}
	case ModeKey:
		srv, cli, err := ephemeralTLS(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		s := &peerAuth{mode: mode, name: "srv", keys: keys, serverTLS: func() *tls.Config { return srv }, clientTLS: func() *tls.Config { return cli }}
		c := &peerAuth{mode: mode, name: "cli", keys: keys, serverTLS: func() *tls.Config { return srv }, clientTLS: func() *tls.Config { return cli }}
		return s, c
	case ModeMTLS, ModeMTLSKey:
		ca := newTestCA(b, "bench CA")
		auth := func(name string) *peerAuth {
			r, err := loadCerts(Config{NodeName: name, TLS: ca.issue(b, name, "127.0.0.1"), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			a := &peerAuth{mode: mode, name: name, serverTLS: r.ServerConfig, clientTLS: r.ClientConfig, peerNames: r.PeerNames}
			if mode == ModeMTLSKey {
				a.keys = keys
			}
			return a
		}
		return auth("srv"), auth("cli")
	}
	b.Fatalf("mode %s not benchmarked", mode)
	return nil, nil
}

// BenchmarkHandshake measures the time to the first Raft RPC on a new connection: dial, the mode's
// handshake, one RequestVote and its answer, over loopback, with raft's own NetworkTransport on the client
// side and vipd's rpcServer on the other. Run: go test -run '^$' -bench Handshake ./cluster/
func BenchmarkHandshake(b *testing.B) {
	for _, mode := range []SecurityMode{ModeInsecure, ModeKey, ModeMTLS, ModeMTLSKey} {
		b.Run(string(mode), func(b *testing.B) {
			srvAuth, cliAuth := benchAuth(b, mode)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			log := slog.New(slog.DiscardHandler)
			srv := newRPCServer(ln, srvAuth, nil, log, newRateLog(log, refusalLogEvery, time.Now), nil)
			srv.start()
			go func() {
				for {
					select {
					case rpc := <-srv.consume:
						rpc.Respond(&raft.RequestVoteResponse{Term: 7}, nil)
					case <-srv.done:
						return
					}
				}
			}()
			defer srv.close()
			dl := &dialLayer{auth: cliAuth, closed: make(chan struct{})}
			req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("cli")}, Term: 1}
			b.ResetTimer()
			for range b.N {
				// MaxPool 0: every RPC dials a new connection, as the first RPC to a peer does.
				nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: dl, MaxPool: 0,
					Timeout: 2 * time.Second, Logger: newHclog(log, "bench")})
				var resp raft.RequestVoteResponse
				if err := nt.RequestVote("srv", raft.ServerAddress(ln.Addr().String()), req, &resp); err != nil || resp.Term != 7 {
					b.Fatalf("RequestVote: %v, %+v", err, resp)
				}
				nt.Close()
			}
		})
	}
}
