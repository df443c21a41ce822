package cluster

import "github.com/vipd/vipd/internal/pki"

// maxNodeName is the longest accepted node name: a DNS label, so a name fits a certificate's SAN and a
// hostname, and a member list line stays readable.
const maxNodeName = 63

// ValidNodeName reports whether s is an acceptable node name: 1 to 63 characters from [A-Za-z0-9._-].
//
// The rule is enforced wherever a name enters: Config.NodeName, gossip (the alive and merge delegates refuse
// any other name, so a name with terminal escapes never reaches `vipd members`), the Raft handshake and
// Recover's peers. It is pki.ValidNodeName: certificates name nodes by the same rule.
func ValidNodeName(s string) bool { return pki.ValidNodeName(s) }
