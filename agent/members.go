package agent

import (
	"fmt"
	"sort"
)

// members builds the `vipd members` view from gossip (status, health, VIP) and Raft (role), and explains in
// Note why nobody holds the VIP when that is the case.
func (a *Agent) members() MembersResponse {
	resp := MembersResponse{Self: a.cfg.Node, Members: []Member{}}
	voters, alive := 0, 0
	for _, m := range a.cluster.Members() {
		row := Member{
			Name: m.Name, Addr: m.Addr, Status: string(m.Status), Role: string(m.Role), Leader: m.Leader,
			Healthy: m.Meta.Healthy, ListenerUp: m.Meta.ListenerUp,
			HealthyBackends: m.Meta.HealthyBackends, TotalBackends: m.Meta.TotalBackends,
			Witness: m.Meta.Witness, Priority: m.Meta.Priority, Version: m.Meta.Version, Security: string(m.Security),
			VIPHeld: m.Meta.VIPHeld && m.Status == "alive", // a suspect node's last word may be stale
		}
		if m.Leader {
			resp.Leader = m.Name
		}
		if row.VIPHeld {
			resp.VIPHolder = m.Name
		}
		if m.Role == "leader" || m.Role == "follower" {
			voters++
			if m.Status == "alive" {
				alive++
			}
		}
		resp.Members = append(resp.Members, row)
	}
	sort.Slice(resp.Members, func(i, j int) bool { return resp.Members[i].Name < resp.Members[j].Name })
	switch {
	case resp.Leader == "" && voters > 0:
		resp.Note = fmt.Sprintf("no leader: %d of %d voters alive, a quorum needs %d; nobody holds the VIP until a quorum is back",
			alive, voters, voters/2+1)
	case resp.Leader == "":
		resp.Note = "no leader yet: waiting for the cluster to form (-bootstrap-expect) or to be joined"
	case len(a.cfg.VIPs) > 0 && resp.VIPHolder == "":
		resp.Note = fmt.Sprintf("leader %s does not hold the VIP yet (acquiring, or handing leadership to a healthy node)", resp.Leader)
	}
	return resp
}
