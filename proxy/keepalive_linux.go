package proxy

import "time"

// TCP keepalive matters only to a connection that lives: its first probe goes out after KeepAlive of
// silence (30 s by default). Setting it costs three setsockopt calls per socket (SO_KEEPALIVE, TCP_KEEPIDLE,
// TCP_KEEPINTVL), a sixth of the system calls of a short connection's whole life. So a reactor does not set
// it when it connects a backend (or opens a client socket that did not inherit it from a Listen listener):
// it sets it at its next keepalive pass, once a second, on the connections still open then. A short
// connection never pays for it; a long one probes at most keepAliveDelay later than it would have.

// keepAliveDelay is the period of a reactor's keepalive pass.
const keepAliveDelay = time.Second

// Which of a connection's sockets still need their keepalive set.
const (
	kaClient uint8 = 1 << iota
	kaBackend
)

// deferKeepAlive records that c's sockets in which need c.set.KeepAlive, for the next pass.
func (r *reactor) deferKeepAlive(c *conn, which uint8) {
	if which == 0 {
		return
	}
	c.keepAlive = which
	if len(r.kaPending) == 0 {
		r.kaDue = time.Now().Add(keepAliveDelay).UnixNano()
	}
	r.kaPending = append(r.kaPending, c.ref())
}

// setKeepAlives is the pass: every connection still open gets its keepalive.
func (r *reactor) setKeepAlives() {
	for _, ref := range r.kaPending {
		c := r.lookup(ref.slot, ref.gen)
		if c == nil || c.state != stateOpen {
			continue
		}
		if c.keepAlive&kaClient != 0 {
			_ = setKeepAlive(c.client, c.set.KeepAlive)
		}
		if c.keepAlive&kaBackend != 0 {
			_ = setKeepAlive(c.backend, c.set.KeepAlive)
		}
		c.keepAlive = 0
	}
	clear(r.kaPending)
	r.kaPending, r.kaDue = r.kaPending[:0], 0
}
