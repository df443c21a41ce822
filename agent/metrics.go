package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipd/vipd/cluster"
)

// clusterCollector exports Raft's and gossip's state at scrape time, read from cluster.Status and Members:
// nothing to keep in sync, and a scrape costs one configuration read.
type clusterCollector struct {
	c *cluster.Cluster

	leader, term, lastContact, commit, applied, voters, state, members *prometheus.Desc
}

func newClusterCollector(c *cluster.Cluster) *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &clusterCollector{
		c:           c,
		leader:      d("vipd_raft_leader", "1 if this node is the Raft leader."),
		term:        d("vipd_raft_term", "Current Raft term."),
		lastContact: d("vipd_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader)."),
		commit:      d("vipd_raft_commit_index", "Raft commit index."),
		applied:     d("vipd_raft_applied_index", "Raft applied index."),
		voters:      d("vipd_raft_voters", "Voters in the latest Raft configuration."),
		state:       d("vipd_raft_state", "1 for this node's Raft state.", "state"),
		members:     d("vipd_cluster_members", "Gossip members by status, this node included.", "status"),
	}
}

func (cc *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cc.leader, cc.term, cc.lastContact, cc.commit, cc.applied, cc.voters, cc.state, cc.members} {
		ch <- d
	}
}

func (cc *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st := cc.c.Status()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(cc.leader, b2f(st.State == "Leader"))
	g(cc.term, float64(st.Term))
	contact := 0.0
	if !st.LastContact.IsZero() {
		contact = time.Since(st.LastContact).Seconds()
	}
	g(cc.lastContact, contact)
	g(cc.commit, float64(st.CommitIndex))
	g(cc.applied, float64(st.AppliedIndex))
	g(cc.voters, float64(st.Voters))
	for _, s := range []string{"Leader", "Follower", "Candidate", "Shutdown"} {
		g(cc.state, b2f(st.State == s), s)
	}
	counts := map[cluster.MemberStatus]int{}
	for _, m := range cc.c.Members() {
		counts[m.Status]++
	}
	for _, s := range []cluster.MemberStatus{cluster.StatusAlive, cluster.StatusSuspect, cluster.StatusDead, cluster.StatusLeft} {
		g(cc.members, float64(counts[s]), string(s))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// BuildInfo identifies the running binary: `vipd version`, vipd_build_info, and the VERSION column of
// `vipd members`.
type BuildInfo struct {
	Version, Commit, GoVersion string
}

func registerBuildInfo(reg prometheus.Registerer, bi BuildInfo) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "vipd_build_info",
		Help:        "Always 1; the labels say which vipd is running.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "goversion": bi.GoVersion},
	})
	g.Set(1)
	reg.MustRegister(g)
}
