package agent

import "time"

// MembersResponse is the body of GET /v1/members, which `vipd members` renders.
type MembersResponse struct {
	// Self is the node that answered.
	Self string `json:"self"`
	// Leader is the Raft leader this node knows of, "" when there is none (no quorum, or an election).
	Leader string `json:"leader"`
	// VIPHolder is the node whose gossip says it holds the VIP, "" when none does.
	VIPHolder string   `json:"vip_holder"`
	Members   []Member `json:"members"`
	// Note explains an unusual state to an operator, e.g. why nobody holds the VIP.
	Note string `json:"note,omitempty"`
}

// Member is one row of `vipd members`.
type Member struct {
	Name            string `json:"name"`
	Addr            string `json:"addr"`
	Status          string `json:"status"` // alive, suspect, dead, left
	Role            string `json:"role"`   // leader, follower, non-voter, none
	Leader          bool   `json:"leader"`
	Healthy         bool   `json:"healthy"`
	ListenerUp      bool   `json:"listener_up"`
	HealthyBackends int    `json:"healthy_backends"`
	TotalBackends   int    `json:"total_backends"`
	Witness         bool   `json:"witness,omitempty"`
	Priority        int    `json:"priority,omitempty"`
	VIPHeld         bool   `json:"vip_held"`
	Version         string `json:"version"`
}

// StatusResponse is the body of GET /v1/status, which `vipd status` renders.
type StatusResponse struct {
	Node         string        `json:"node"`
	Cluster      bool          `json:"cluster"`
	ClusterID    string        `json:"cluster_id,omitempty"`
	Role         string        `json:"role"`
	Term         uint64        `json:"term"`
	Leader       string        `json:"leader"`
	LeaderAddr   string        `json:"leader_addr"`
	LastContact  time.Duration `json:"last_contact_ns"`
	CommitIndex  uint64        `json:"commit_index"`
	AppliedIndex uint64        `json:"applied_index"`
	Voters       int           `json:"voters"`
	VIPs         []string      `json:"vips"`
	VIPHeld      bool          `json:"vip_held"`
	Healthy      bool          `json:"healthy"`
	HealthReason string        `json:"health_reason,omitempty"`
	Version      string        `json:"version"`
	// Problem is a condition an operator must fix, e.g. a duplicate node name.
	Problem string `json:"problem,omitempty"`
}

// BackendsResponse is the body of GET /v1/backends: every frontend with its backends.
type BackendsResponse struct {
	Frontends []FrontendInfo `json:"frontends"`
}

// FrontendInfo is one frontend of /v1/backends.
type FrontendInfo struct {
	Name     string        `json:"name"`
	Listen   string        `json:"listen"`
	Healthy  bool          `json:"healthy"`
	Backends []BackendInfo `json:"backends"`
}

// BackendInfo is one upstream as the proxy and its health checks see it.
type BackendInfo struct {
	Addr       string    `json:"addr"`
	State      string    `json:"state"`
	Weight     int       `json:"weight"`
	Drained    bool      `json:"drained,omitempty"`
	LastCheck  time.Time `json:"last_check"`
	LastError  string    `json:"last_error,omitempty"`
	LatencyMS  float64   `json:"latency_ms"`
	Active     int64     `json:"active_connections"`
	Total      uint64    `json:"total_connections"`
	StateSince time.Time `json:"state_since"`
}

// ForceLeaveRequest is the body of POST /v1/force-leave.
type ForceLeaveRequest struct {
	// Node is the failed node to remove from Raft.
	Node string `json:"node"`
}

// DrainRequest is the body of POST /v1/backends/drain (`vipd backend drain|enable FRONTEND ADDR`).
type DrainRequest struct {
	Frontend string `json:"frontend"`
	Backend  string `json:"backend"`
	// Drain true takes the backend out of service, false puts it back.
	Drain bool `json:"drain"`
}
