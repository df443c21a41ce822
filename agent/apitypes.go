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
	// Security is how the member authenticates its peers: key, mtls, mtls+key, or insecure.
	Security string `json:"security,omitempty"`
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
	// Security is how this node authenticates its peers (key, mtls, mtls+key, insecure); Refused counts the
	// peers and RPCs it refused since start.
	Security string `json:"security,omitempty"`
	Refused  uint64 `json:"refused,omitempty"`
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

// KeyringResponse is the body of GET /v1/keyring: every installed key by fingerprint, how many nodes hold
// it and use it as primary, and each member's view.
type KeyringResponse struct {
	Keys    []KeyInfo    `json:"keys"`
	Members []MemberKeys `json:"members"`
	// Nodes is the number of alive members the counts are out of.
	Nodes int `json:"nodes"`
}

// KeyInfo is one key of /v1/keyring, by fingerprint (the first 8 hex digits of its SHA-256), never the key.
type KeyInfo struct {
	Fingerprint string `json:"fingerprint"`
	// InstalledOn and PrimaryOn count the alive members that hold the key, that use it as primary.
	InstalledOn int `json:"installed_on"`
	PrimaryOn   int `json:"primary_on"`
}

// MemberKeys is one member's keyring as it gossips it.
type MemberKeys struct {
	Name    string   `json:"name"`
	Status  string   `json:"status"`
	Keys    []string `json:"keys"`
	Primary string   `json:"primary"`
}

// KeyringRequest is the body of POST /v1/keyring: Op is install, use or remove; Key the base64 key.
type KeyringRequest struct {
	Op  string `json:"op"`
	Key string `json:"key"`
}
