// Package proxy is vipd's L4 data path: it accepts TCP connections on the service address and spreads them
// over the backends that are healthy right now, the job Envoy or HAProxy does in front of a Kubernetes API.
//
// Connections live in reactors (reactor_linux.go), one per P: a goroutine that owns an epoll set with the
// client and backend sockets of its connections and drives each connection as a small state machine (accept,
// connect, move bytes, close) with raw, non-blocking system calls. A connection has no goroutine, no *os.File
// and no place in the Go poller; the reactor itself sleeps in the Go poller, so other goroutines share its P.
// That layout is what issue 13 measured: per short connection the goroutine-per-direction data path made 28
// system calls and 1.1 context switches (Go's poller registration and removal, notified closes that handed
// the P to another thread and woke sysmon), the reactor makes about 20 and 0.3.
//
// Bytes move between the sockets like HAProxy's splice-auto: a direction copies small messages through the
// reactor's 16 KiB buffer (recv, then send at once) until one read fills it, and splices through a kernel
// pipe from then on, so bulk payload never enters user space. A pipe is borrowed from a small bounded free
// list only while bytes are in it: an idle proxied connection costs exactly its two sockets and a pooled
// struct.
//
// A Proxy changes at run time, as a reload needs: SetConfig applies a new configuration to the next
// connection, CloseBackend lets a removed backend's connections finish for a grace period and then closes
// them, touching no other. Trouble of this node's own — a dial or accept failing with EMFILE, ENFILE,
// ENOBUFS, ENOMEM or EADDRNOTAVAIL — is never blamed on a backend: the client is refused at once, the error
// is counted and logged at most once a minute. A dial to one of the proxy's own listening addresses is
// refused, so a misconfigured backend list cannot make a connection loop through the proxy. Metrics are
// registered once per agent (NewMetrics) and labelled per frontend (Metrics.Frontend); DefaultMaxConns
// sizes MaxConns from RLIMIT_NOFILE, and CheckSomaxconn says whether the kernel lets a listener queue a
// reconnect storm.
//
// The package is Linux-only (epoll, splice, pipe2).
package proxy
