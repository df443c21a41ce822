package agent

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/internal/sched"
	"github.com/vipd/vipd/proxy"
)

// immutableChanges returns the settings, as flags, that differ between old and next and cannot change while
// the agent runs (those not tagged reload:"live": the node's identity, its cluster ports and data, the VIP).
func immutableChanges(old, next Config) []string {
	var out []string
	var walk func(a, b reflect.Value)
	walk = func(a, b reflect.Value) {
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				walk(a.Field(i), b.Field(i))
				continue
			}
			if f.Tag.Get("reload") == "live" {
				continue
			}
			if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				out = append(out, "-"+name)
			}
		}
	}
	walk(reflect.ValueOf(old), reflect.ValueOf(next))
	slices.Sort(out)
	return out
}

// reload is Run's handling of a reload request: read the configuration again, refuse it if a setting that
// cannot change live changed, validate it through New (the one validation path, as a dry run), and only then
// apply it. Nothing fallible happens after the first change.
func (a *Agent) reload(rt *running) error {
	start := time.Now()
	err := a.reloadOnce(rt)
	if err != nil {
		a.log.Error("reload refused; the running configuration is unchanged", "err", err)
		return err
	}
	a.log.Info("configuration reloaded", "took", time.Since(start).Round(time.Microsecond))
	return nil
}

func (a *Agent) reloadOnce(rt *running) error {
	if a.opts.Reload == nil {
		return errors.New("this agent was started without a configuration source to reload")
	}
	next, err := a.opts.Reload()
	if err != nil {
		return err
	}
	cur := *a.live.Load()
	if bad := immutableChanges(cur, next); len(bad) > 0 {
		return &ConfigError{msg: fmt.Sprintf("%s cannot change while the agent runs: restart it to change %s", strings.Join(bad, ", "), pronoun(len(bad)))}
	}
	// Validate exactly as a start would, without touching anything.
	if _, err := New(next, Options{DryRun: true, Kernel: a.opts.Kernel, Version: a.opts.Version}); err != nil {
		return err
	}
	var token string
	if next.HTTPTokenFile != "" {
		if token, err = readTokenFile(next.HTTPTokenFile); err != nil {
			return err
		}
	}
	plan, err := a.planFrontends(rt, next)
	if err != nil {
		return err
	}
	if a.vip != nil {
		// The last fallible step: validated as New did, applied only if valid.
		if err := a.vip.SetHooks(next.OnAcquire.vip(), next.OnRelease.vip(), next.HookTimeout); err != nil {
			plan.abort()
			return flagError(err, vipFlags)
		}
	}
	// From here on nothing fails.
	if a.vip != nil {
		// Before the new frontends take traffic, so their flows are known as this node's in a hand-over.
		ports, unknown := portsOf(plan.order)
		if unknown && next.HandoverDrain && !a.noFlows {
			a.log.Warn("hand-over drains do not cover a frontend that listens on port 0")
		}
		_ = a.vip.AddPorts(ports...) // portsOf returns no 0, the only port AddPorts refuses
	}
	plan.apply()
	if a.opts.LogLevel != nil {
		_ = a.opts.LogLevel.UnmarshalText([]byte(next.LogLevel)) // validated by New
	}
	a.adminToken.Store(&token)
	if next.Nice != cur.Nice {
		if err := sched.SetNice(next.Nice); err != nil {
			a.log.Warn("cannot change the scheduling priority", "nice", next.Nice, "err", err)
		}
	}
	a.live.Store(&next)
	return nil
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// frontendPlan is how a reload changes the frontends, prepared in full (checkers built, TLS files read,
// new listeners bound) before anything running is touched.
type frontendPlan struct {
	a       *Agent
	rt      *running
	drain   time.Duration
	updates []frontendUpdate
	added   []addedFrontend
	retired []*frontend
	order   []*frontend // the frontends afterwards, in configuration order
}

// frontendUpdate changes a running frontend in place: same name, same listener.
type frontendUpdate struct {
	fe   *frontend // the running one; next replaces it in the list
	next *frontend
	hc   health.Config
	pc   proxy.Config
	gone []string // backends removed: their connections may finish for -drain-timeout
}

type addedFrontend struct {
	fe *frontend
	ln net.Listener
}

// planFrontends prepares next's frontends against the running ones. A frontend whose listen address changed
// is a new frontend (new listener) that replaces the old one (which drains).
func (a *Agent) planFrontends(rt *running, next Config) (*frontendPlan, error) {
	plan := &frontendPlan{a: a, rt: rt, drain: next.DrainTimeout}
	var specs []frontendSpec
	if !next.Witness {
		var err error
		if specs, err = next.frontendSpecs(); err != nil {
			return nil, err
		}
	}
	running := map[string]*frontend{}
	for _, fe := range a.frontendList() {
		running[fe.spec.name] = fe
	}
	kept := map[*frontend]bool{}
	for _, s := range specs {
		fe, ok := running[s.name]
		if ok && fe.spec.listen == s.listen {
			kept[fe] = true
			u, err := a.planUpdate(fe, s, next, len(specs))
			if err != nil {
				plan.abort()
				return nil, err
			}
			plan.updates = append(plan.updates, u)
			plan.order = append(plan.order, u.next)
			continue
		}
		nf, err := a.buildFrontend(s, next, len(specs))
		if err == nil {
			var ln net.Listener
			if ln, err = nf.listen(rt.base); err == nil {
				plan.added = append(plan.added, addedFrontend{fe: nf, ln: ln})
				plan.order = append(plan.order, nf)
			}
		}
		if err != nil {
			plan.abort()
			return nil, err
		}
	}
	for _, fe := range a.frontendList() {
		if !kept[fe] { // gone, or replaced by one on a new listener
			plan.retired = append(plan.retired, fe)
		}
	}
	return plan, nil
}

func (a *Agent) planUpdate(fe *frontend, s frontendSpec, next Config, frontends int) (frontendUpdate, error) {
	checker, err := health.NewChecker(s.check)
	if err != nil {
		return frontendUpdate{}, settingError(err, s.fieldName)
	}
	pc, err := proxySettings(s, next, frontends)
	if err != nil {
		return frontendUpdate{}, settingError(err, s.fieldName)
	}
	nf := *fe
	nf.spec = s
	u := frontendUpdate{fe: fe, next: &nf, hc: healthConfig(s, checker), pc: pc}
	keep := map[string]bool{}
	for _, b := range s.backends {
		keep[b.Addr] = true
	}
	for _, b := range fe.spec.backends {
		if !keep[b.Addr] {
			u.gone = append(u.gone, b.Addr)
		}
	}
	return u, nil
}

// abort closes the listeners the plan bound: the reload is refused and nothing ran.
func (p *frontendPlan) abort() {
	for _, n := range p.added {
		n.ln.Close()
	}
}

// apply carries the plan out. Every step here was validated while planning, so none fails: Update and
// SetConfig check again what New already checked for the same values.
func (p *frontendPlan) apply() {
	a := p.a
	for _, u := range p.updates {
		if err := u.fe.monitor.Update(u.hc, u.next.spec.healthBackends()); err != nil {
			a.log.Error("reload: health checks not updated (a bug: validated before)", "frontend", u.fe.spec.name, "err", err)
		}
		if err := u.fe.proxy.SetConfig(u.pc); err != nil {
			a.log.Error("reload: proxy not updated (a bug: validated before)", "frontend", u.fe.spec.name, "err", err)
		}
		for _, addr := range u.gone {
			u.fe.proxy.CloseBackend(addr, p.drain)
		}
	}
	for _, fe := range p.retired {
		a.retire(p.rt, fe)
	}
	for _, n := range p.added {
		a.launch(p.rt, n.fe, n.ln)
	}
	a.setFrontends(p.order)
}
