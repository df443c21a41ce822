// Package attack is vipd's attacker suite (issue 8): a real three-node cluster — the vipd binary, built once
// per test run, each agent in its own network namespace on one bridge, with a cluster key — and a rogue
// process in a fourth namespace on the same segment that tries every way a stranger has to steer it:
//
//   - every Raft RPC (RequestVote, RequestPreVote, AppendEntries with a configuration change, TimeoutNow,
//     InstallSnapshot, a Term-0 probe) over plain TCP, with a wrong key, and over TLS with no key;
//   - joining gossip without the key and with a wrong one, claiming health, the top priority and Raft state;
//   - flooding the segment with malformed and foreign ARP while a client namespace resolves the VIP;
//   - posting to each node's admin API as a web page in a browser on that node could (text/plain or form
//     bodies, JSON with an Origin, a DNS-rebinding Host).
//
// It asserts that nothing moved — every term, leader and voter set, the VIP's holder, the MAC the client is
// answered from — that the responder kept answering, that every agent still runs, and that the stranger
// learned nothing (no term, index or node name). The same suite against a cluster started with -insecure
// shows what that flag gives away, and must find something: otherwise the refusals prove nothing.
//
// The agents run with vipd's default Raft timings (50 ms lease), as users run them. A shared test machine
// sometimes does not schedule any process for longer than that, which moves leadership whatever the
// attacker does; a stall probe at the agent's priority (stall_test.go) tells such a change from the
// attack's, and only then is the phase tried again from a new steady state (at most three times). Every
// change no stall explains fails the test.
//
// The tests run in `make unit` (go test -race ./...) as root and skip without it. They are not behind the
// integration build tag: they need no Docker, only ip (iproute2) and sysctl. The attacker runs as this
// test binary re-executed inside its namespace (TestMain dispatches on an environment variable), so every
// socket it opens, its background goroutines' included, is the attacker's.
package attack
