package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/vipd/vipd/cluster"
)

// handleKeyring reports the cluster's keyring: each key by fingerprint, on how many alive nodes it is
// installed and primary (what `vipd keyring -list` prints, Consul's `keyring -list`).
func (a *Agent) handleKeyring(w http.ResponseWriter, _ *http.Request) {
	if a.cluster == nil {
		http.Error(w, "no cluster: this agent runs as a proxy alone", http.StatusConflict)
		return
	}
	st, err := a.cluster.Keyring()
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	resp := KeyringResponse{Keys: []KeyInfo{}, Members: []MemberKeys{}}
	count := map[string]*KeyInfo{}
	info := func(fp string) *KeyInfo {
		if count[fp] == nil {
			count[fp] = &KeyInfo{Fingerprint: fp}
		}
		return count[fp]
	}
	for _, fp := range st.Keys {
		info(fp)
	}
	for _, m := range st.Members {
		resp.Members = append(resp.Members, MemberKeys{Name: m.Name, Status: string(m.Status), Keys: m.Keys, Primary: m.Primary})
		if m.Status != cluster.StatusAlive {
			continue
		}
		resp.Nodes++
		for _, fp := range m.Keys {
			info(fp).InstalledOn++
		}
		if m.Primary != "" {
			info(m.Primary).PrimaryOn++
		}
	}
	for _, k := range count {
		resp.Keys = append(resp.Keys, *k)
	}
	sort.Slice(resp.Keys, func(i, j int) bool { return resp.Keys[i].Fingerprint < resp.Keys[j].Fingerprint })
	writeJSON(w, resp)
}

// handleKeyringChange installs, uses or removes a key cluster-wide through the Raft log.
func (a *Agent) handleKeyringChange(w http.ResponseWriter, r *http.Request) {
	var req KeyringRequest
	if !readJSON(w, r, &req) {
		return
	}
	if a.cluster == nil {
		http.Error(w, "no cluster: this agent runs as a proxy alone", http.StatusConflict)
		return
	}
	key, err := cluster.ParseKey(req.Key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	op := map[string]func(context.Context, []byte) error{
		"install": a.cluster.InstallKey, "use": a.cluster.UseKey, "remove": a.cluster.RemoveKey,
	}[req.Op]
	if op == nil {
		http.Error(w, fmt.Sprintf("op %q: want install, use or remove", req.Op), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := op(ctx, key); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, cluster.ErrKeyringUnsafe) || errors.Is(err, cluster.ErrNoKeyring) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	a.log.Info("keyring changed by the operator", "op", req.Op, "key", cluster.KeyFingerprint(key))
	fmt.Fprintf(w, "%s %s: committed to the cluster log, every node applies it\n", req.Op, cluster.KeyFingerprint(key))
}
