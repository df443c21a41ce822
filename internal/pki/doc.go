// Package pki is vipd's small certificate authority and the loading side of node identities: it creates a CA
// and node certificates (as `consul tls ca create` / `consul tls cert create` do), loads a node's CA bundle,
// certificate and key with every check an operator can get wrong (file modes, PEM, key pair, node name,
// validity, chain), keeps them current while files are rotated in place, and builds the mutual-TLS
// configurations that Raft and gossip use.
//
// # Identity
//
// A node certificate names node N by a DNS SAN equal to N or a URI SAN "vipd://N". The match is exact and
// case-sensitive, like vipd's node names ([A-Za-z0-9._-]{1,63}, see ValidNodeName; a name with a leading,
// trailing or double dot is valid but cannot be put in a certificate, which NewNodeCert says). The
// subject's Common Name is ignored, as in Go's and the browsers' verifiers. A certificate may name several nodes; the caller
// decides which name a connection must carry (PeerNames).
//
// # Trust
//
// Peers are verified against the current CA pool on every handshake (not the pool at start), for both
// ExtKeyUsage ServerAuth and ClientAuth: every vipd node dials and accepts, so a node certificate must allow
// both, which also keeps out a server-only or client-only certificate that happens to come from the same CA
// (a Kubernetes API server or kubelet certificate when the operator reuses the cluster CA). Only node
// certificates issued directly by a CA in the bundle, or through intermediates the peer sends, are accepted.
//
// # Files
//
// The key file must not be readable by group or others (like ssh). Kubernetes secret volumes mount files
// 0644 unless the volume's defaultMode says otherwise: use defaultMode 0400 (or 0600).
package pki
