// Package arpwatch asks "who has the VIP?" on a bridge every few
// milliseconds and records every MAC address that answers or announces it,
// so the suite can show that two nodes never answer for the VIP at once
// (split brain), as it would be seen by any client on that segment.
//
// It asks in the name of a made-up station (its own MAC and an unused IP of
// the subnet) and listens promiscuously, so the answers never reach the
// host's own ARP cache: otherwise this observer would refresh the host's
// neighbour entry for the VIP itself and hide what gratuitous ARP buys.
package arpwatch

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

const etherTypeARP = 0x0806

// Answer is one ARP packet in which a station claimed the target address.
type Answer struct {
	At         time.Time
	MAC        string
	Gratuitous bool // an announcement (target IP = sender IP), not a reply to us
}

// Config says where to watch and for what.
type Config struct {
	Interface string           // the bridge, e.g. br-0123456789ab
	Target    netip.Addr       // the VIP
	SenderIP  netip.Addr       // an unused address of the subnet to ask from
	SenderMAC net.HardwareAddr // a locally administered MAC no one else uses
	Interval  time.Duration    // default 20ms
}

// Watcher records answers for Target. Safe for concurrent use.
type Watcher struct {
	cfg      Config
	mu       sync.Mutex
	answers  []Answer
	requests []time.Time
}

// New returns a Watcher; nothing is opened until Run.
func New(cfg Config) *Watcher {
	if cfg.Interval <= 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	return &Watcher{cfg: cfg}
}

// Run opens a raw socket on the interface and asks every Interval until ctx
// is done; it returns when its reader has stopped. It needs CAP_NET_RAW.
func (w *Watcher) Run(ctx context.Context) error {
	ifi, err := net.InterfaceByName(w.cfg.Interface)
	if err != nil {
		return fmt.Errorf("arpwatch: interface %s: %w", w.cfg.Interface, err)
	}
	pc, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return fmt.Errorf("arpwatch: raw socket on %s: %w", ifi.Name, err)
	}
	// Replies go to our made-up MAC, which the bridge floods; only a
	// promiscuous socket sees them, and the host's ARP stack drops them.
	if err := pc.SetPromiscuous(true); err != nil {
		pc.Close()
		return fmt.Errorf("arpwatch: promiscuous mode on %s: %w", ifi.Name, err)
	}
	c, err := arp.New(ifi, pc)
	if err != nil {
		pc.Close()
		return fmt.Errorf("arpwatch: ARP client on %s: %w", ifi.Name, err)
	}
	req, err := arp.NewPacket(arp.OperationRequest, w.cfg.SenderMAC, w.cfg.SenderIP, ethernet.Broadcast, w.cfg.Target)
	if err != nil {
		c.Close()
		return fmt.Errorf("arpwatch: build request: %w", err)
	}

	readDone, stopping := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readDone)
		w.read(c, stopping)
	}()
	defer func() {
		close(stopping)
		c.Close() // unblocks read
		<-readDone
	}()

	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		now := time.Now()
		if err := c.WriteTo(req, ethernet.Broadcast); err == nil {
			w.mu.Lock()
			w.requests = append(w.requests, now)
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *Watcher) read(c *arp.Client, stopping <-chan struct{}) {
	for {
		p, _, err := c.Read()
		if err != nil {
			select {
			case <-stopping:
				return
			default:
			}
			// A malformed frame, or a socket error: do not spin on the latter.
			time.Sleep(time.Millisecond)
			continue
		}
		if p.SenderIP != w.cfg.Target || p.SenderHardwareAddr.String() == w.cfg.SenderMAC.String() {
			continue
		}
		grat := p.TargetIP == w.cfg.Target
		if p.Operation == arp.OperationRequest && !grat {
			continue // someone asking in the VIP's name is not an answer
		}
		w.mu.Lock()
		w.answers = append(w.answers, Answer{At: time.Now(), MAC: p.SenderHardwareAddr.String(), Gratuitous: grat})
		w.mu.Unlock()
	}
}

// Report analyses what was seen in [from, to].
func (w *Watcher) Report(from, to time.Time) Report {
	w.mu.Lock()
	answers := append([]Answer(nil), w.answers...)
	requests := append([]time.Time(nil), w.requests...)
	w.mu.Unlock()
	return Analyze(answers, requests, from, to, 3*w.cfg.Interval+20*time.Millisecond)
}

// Holder returns the MAC that answered most recently, if it did at or after
// since; "" otherwise.
func (w *Watcher) Holder(since time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.answers); n > 0 && !w.answers[n-1].At.Before(since) {
		return w.answers[n-1].MAC
	}
	return ""
}
