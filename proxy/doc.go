// Package proxy is vipd's L4 data path: it accepts TCP connections on the service address and spreads them
// over the backends that are healthy right now, the job Envoy or HAProxy does in front of a Kubernetes API.
//
// Bytes move between the client and the backend socket with splice(2) through a kernel pipe, so bulk payload
// never enters user space; like HAProxy's splice-auto, a direction copies small messages through a 16 KiB
// pooled buffer until one read fills it, and splices from then on. Unlike io.Copy (which parks holding a splice pipe per direction), a direction waits for
// readability without a pipe and borrows one from a small bounded free list only while bytes are in flight:
// an idle proxied connection costs exactly its two sockets. Its downstream direction waits in an epoll set
// the server owns instead of on a goroutine of its own, so it also parks one goroutine, not two.
//
// A Proxy changes at run time, as a reload needs: SetConfig applies a new configuration to the next
// connection, CloseBackend lets a removed backend's connections finish for a grace period and then closes
// them, touching no other. Trouble of this node's own — a dial or accept failing with EMFILE, ENFILE,
// ENOBUFS, ENOMEM or EADDRNOTAVAIL — is never blamed on a backend: the client is refused at once, the error
// is counted and logged at most once a minute. A dial to one of the proxy's own listening addresses is
// refused, so a misconfigured backend list cannot make a connection loop through the proxy. Metrics are
// registered once per agent (NewMetrics) and labelled per frontend (Metrics.Frontend); DefaultMaxConns
// sizes MaxConns from RLIMIT_NOFILE.
//
// The package is Linux-only (splice, pipe2).
package proxy
