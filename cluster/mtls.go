package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"

	"github.com/vipd/vipd/internal/pki"
	"github.com/vipd/vipd/internal/tlsgossip"
)

// certSource is mutual TLS's view of this node's certificates: TLS 1.3 configs that verify the peer against
// the cluster CA (re-read when the files change) and the node names a verified peer certificate carries.
type certSource interface {
	ServerConfig() *tls.Config
	ClientConfig() *tls.Config
	PeerNames(cs tls.ConnectionState) []string
}

// reloaderCerts is a certSource over a pki.Reloader, which re-reads the files when they change.
type reloaderCerts struct{ *pki.Reloader }

// PeerNames returns the node names of the peer's verified certificate.
func (reloaderCerts) PeerNames(cs tls.ConnectionState) []string { return pki.PeerNames(cs) }

// loadCerts loads cfg.TLS with every check of pki.Load (files readable, key private, certificate signed by
// the CA, valid now, naming the node); an error names the field of the file at fault.
func loadCerts(cfg Config) (certSource, error) {
	r, err := pki.NewReloader(cfg.TLS, cfg.NodeName, cfg.Logger.With(subsystemKey, "tls"), nil)
	if err != nil {
		var fe *pki.FileError
		if errors.As(err, &fe) {
			return nil, invalid("TLS."+fe.Which, "%v", err)
		}
		return nil, invalid("TLS.Cert", "%v", err)
	}
	return reloaderCerts{r}, nil
}

// tlsGossipTransport is gossip over mutual TLS (internal/tlsgossip), for nodes with certificates and no key.
func (c *Cluster) tlsGossipTransport() (memberlist.NodeAwareTransport, error) {
	var allow func(string) bool
	if f := c.cfg.Partition.filter(); f != nil {
		allow = func(addr string) bool { return !f.isBlocked(addr) }
	}
	t, err := tlsgossip.New(tlsgossip.Config{
		BindAddr: c.cfg.BindAddr,
		BindPort: c.cfg.GossipPort,
		Server:   c.certs.ServerConfig(),
		Client:   c.certs.ClientConfig(),
		Logger:   c.log.With(subsystemKey, "gossip-tls"),
		Allow:    allow,
		Timeout:  gossipTCPTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("gossip over mutual TLS: %w", err)
	}
	return t, nil
}
