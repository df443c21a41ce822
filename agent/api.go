package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/proxy"
)

// routes is the admin API. /healthz and /metrics stay open for probes and scrapers. The /v1 reads need a Host
// that is an IP literal or localhost (a DNS-rebinding page cannot read them); the writes, which change the
// cluster, need that and more: see guardWrite.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", a.handleLivez)
	mux.HandleFunc("GET /readyz", a.handleReadyz)
	mux.HandleFunc("GET /healthz", a.handleReadyz) // the name of earlier versions
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /v1/backends", a.guardRead(a.handleBackends))
	mux.Handle("GET /v1/members", a.guardRead(a.handleMembers))
	mux.Handle("GET /v1/status", a.guardRead(a.handleStatus))
	mux.Handle("POST /v1/leave", a.guardWrite(a.handleLeave))
	mux.Handle("POST /v1/force-leave", a.guardWrite(a.handleForceLeave))
	mux.Handle("POST /v1/reload", a.guardWrite(a.handleReload))
	mux.Handle("GET /v1/keyring", a.guardRead(a.handleKeyring))
	mux.Handle("POST /v1/keyring", a.guardWrite(a.handleKeyringChange))
	mux.Handle("POST /v1/backends/drain", a.guardWrite(a.handleDrain))
	return mux
}

// handleLivez answers 200 while the process serves HTTP: a liveness probe. It never depends on the backends,
// so a supervisor does not restart vipd exactly when the apiservers are down.
func (a *Agent) handleLivez(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintln(w, "ok")
}

// handleReadyz answers 200 when this node can serve: listener up and at least -min-healthy backends healthy
// (a readiness probe, like Envoy's /ready), 503 with the reason otherwise. /healthz is the same.
func (a *Agent) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	if a.node == nil {
		fmt.Fprintln(w, "ok (witness)")
		return
	}
	st := a.node.Status()
	if !st.Healthy {
		http.Error(w, "unhealthy: "+st.Reason, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok: %d/%d frontends healthy, %d/%d backends healthy\n", st.HealthyFrontends, st.TotalFrontends, st.HealthyBackends, st.TotalBackends)
}

// handleBackends reports every frontend with its backends as the health checks and the proxy see them.
func (a *Agent) handleBackends(w http.ResponseWriter, _ *http.Request) {
	resp := BackendsResponse{Frontends: []FrontendInfo{}}
	health := map[string]bool{}
	if a.node != nil {
		for _, f := range a.node.Status().Frontends {
			health[f.Name] = f.Healthy
		}
	}
	for _, fe := range a.frontendList() {
		stats := map[string]proxy.BackendStats{}
		for _, s := range fe.proxy.Stats() {
			stats[s.Addr] = s
		}
		fi := FrontendInfo{Name: fe.spec.name, Listen: fe.spec.listen, Healthy: health[fe.spec.name], Backends: []BackendInfo{}}
		for _, b := range fe.monitor.Backends() {
			fi.Backends = append(fi.Backends, BackendInfo{
				Addr:       b.Addr,
				State:      b.State.String(),
				Weight:     b.Weight,
				Drained:    b.Drained,
				LastCheck:  b.LastCheck,
				LastError:  b.LastError,
				LatencyMS:  float64(b.Latency) / float64(time.Millisecond),
				Active:     stats[b.Addr].Active,
				Total:      stats[b.Addr].Total,
				StateSince: b.Since,
			})
		}
		resp.Frontends = append(resp.Frontends, fi)
	}
	writeJSON(w, resp)
}

// handleDrain takes one backend of one frontend out of service, or puts it back (`vipd backend drain|enable`).
func (a *Agent) handleDrain(w http.ResponseWriter, r *http.Request) {
	var req DrainRequest
	if !readJSON(w, r, &req) {
		return
	}
	for _, fe := range a.frontendList() {
		if fe.spec.name != req.Frontend {
			continue
		}
		if err := fe.monitor.SetDrain(req.Backend, req.Drain); err != nil {
			http.Error(w, fmt.Sprintf("frontend %s: %v", req.Frontend, err), http.StatusNotFound)
			return
		}
		verb := "enabled"
		if req.Drain {
			verb = "drained"
		}
		a.log.Info("backend "+verb+" by the operator", "frontend", req.Frontend, "backend", req.Backend)
		fmt.Fprintf(w, "%s %s of frontend %s\n", verb, req.Backend, req.Frontend)
		return
	}
	http.Error(w, fmt.Sprintf("no frontend %q", req.Frontend), http.StatusNotFound)
}

// handleReload re-reads the configuration (as SIGHUP does) and answers with the outcome.
func (a *Agent) handleReload(w http.ResponseWriter, r *http.Request) {
	if err := a.Reload(r.Context()); err != nil {
		http.Error(w, "reload refused, nothing changed: "+err.Error(), http.StatusConflict)
		return
	}
	fmt.Fprintln(w, "reloaded")
}

func (a *Agent) handleMembers(w http.ResponseWriter, _ *http.Request) {
	if a.cluster == nil {
		st := a.nodeStatus()
		writeJSON(w, MembersResponse{
			Self: a.cfg.Node,
			Members: []Member{{
				Name: a.cfg.Node, Status: "alive", Role: "none", Healthy: st.Healthy, ListenerUp: st.ListenerUp,
				HealthyBackends: st.HealthyBackends, TotalBackends: st.TotalBackends, Version: a.opts.Version,
			}},
			Note: "no cluster: this agent runs as a proxy alone (start it with -join or -bootstrap-expect to form one)",
		})
		return
	}
	writeJSON(w, a.members())
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	st := a.nodeStatus()
	resp := StatusResponse{
		Node:         a.cfg.Node,
		Role:         "none",
		VIPs:         a.cfg.VIPs,
		Healthy:      st.Healthy,
		HealthReason: st.Reason,
		Version:      a.opts.Version,
	}
	if resp.VIPs == nil {
		resp.VIPs = []string{}
	}
	if a.vip != nil {
		resp.VIPHeld = a.vip.Held()
	}
	if a.cluster != nil {
		cs := a.cluster.Status()
		resp.Cluster = true
		resp.ClusterID = cs.ClusterID
		resp.Role = string(cs.Role)
		resp.Term = cs.Term
		resp.Leader = cs.LeaderName
		resp.LeaderAddr = cs.LeaderAddr
		if !cs.LastContact.IsZero() {
			resp.LastContact = time.Since(cs.LastContact)
		}
		resp.Problem = cs.Problem
		resp.CommitIndex = cs.CommitIndex
		resp.AppliedIndex = cs.AppliedIndex
		resp.Voters = cs.Voters
		resp.Security, resp.Refused = string(cs.Security), cs.Refused
	}
	writeJSON(w, resp)
}

// handleLeave makes the agent release the VIP, leave the cluster and exit, answering once the leave is done
// ("left"), or once the VIP is handed over when the node first drains its connections ("draining"): a drain
// lasts up to -drain-timeout, longer than a request may.
func (a *Agent) handleLeave(w http.ResponseWriter, r *http.Request) {
	reply := make(chan error, 1)
	select {
	case a.leaveReq <- reply:
	case <-r.Context().Done():
		return
	}
	select {
	case err := <-reply:
		if errors.Is(err, errLeaveDraining) {
			fmt.Fprintln(w, "draining")
			return
		}
		if err != nil {
			http.Error(w, "leave: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "left")
	case <-r.Context().Done():
	}
}

func (a *Agent) handleForceLeave(w http.ResponseWriter, r *http.Request) {
	var req ForceLeaveRequest
	if !readJSON(w, r, &req) {
		return
	}
	node := req.Node
	if node == "" {
		http.Error(w, `name the node: {"node": "NAME"}`, http.StatusBadRequest)
		return
	}
	if a.cluster == nil {
		http.Error(w, "no cluster: this agent runs as a proxy alone", http.StatusConflict)
		return
	}
	if err := a.cluster.ForceLeave(node); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	fmt.Fprintf(w, "removed %s\n", node)
}

// readJSON decodes a small JSON request body into v; on failure it answers 400 and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // an error means the client went away; there is nobody left to tell
}

// nodeStatus is this node's health; a witness has none and reports why.
func (a *Agent) nodeStatus() health.NodeStatus {
	if a.node == nil {
		return health.NodeStatus{Reason: "witness: no proxy"}
	}
	return a.node.Status()
}
