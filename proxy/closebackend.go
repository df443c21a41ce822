package proxy

import "time"

// CloseBackend ends what this proxy still has open to addr, a backend a reload removed: its open connections
// may finish for grace, then they are closed (FIN), and so is any connection to it whose dial was still in
// flight. It returns at once; the wait runs on a goroutine owned by each running Serve, which ends at the
// grace or once that Serve has drained, whichever is first (the drain closes everything anyway). Connections
// to other backends are never touched.
//
// addr is retired at once: Stats no longer lists it, and a later dial to the same address (added back by
// another reload) counts as a new backend whose connections this call does not close. The backend's metric
// series are deleted after the grace, unless it was added back meanwhile. The caller removes addr from the
// Backends first (health.Monitor.Update), so no new connection picks it.
func (p *Proxy) CloseBackend(addr string, grace time.Duration) {
	be := p.table.retire(addr)
	if be == nil {
		p.forgetBackend(addr) // never dialed: nothing open, no series beyond refusals
		return
	}
	p.mu.Lock()
	servers := make([]*server, 0, len(p.servers))
	for s := range p.servers {
		servers = append(servers, s)
	}
	p.mu.Unlock()
	for _, s := range servers {
		s.closeBackendAfter(be, max(grace, 0))
	}
	if len(servers) == 0 {
		p.forgetBackend(addr)
	}
}

// forgetBackend deletes addr's metric series, unless addr is in use again.
func (p *Proxy) forgetBackend(addr string) {
	if !p.table.has(addr) {
		p.metrics.deleteBackend(addr)
	}
}
