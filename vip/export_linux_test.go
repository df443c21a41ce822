//go:build linux

package vip

// WithoutARPFilter (tests only) opens the ARP socket without its kernel filter, so that a flood reaches
// the userspace checks: the responder must survive that too.
func WithoutARPFilter() KernelOption { return func(k *LinuxKernel) { k.noFilter = true } }

// WithReplyLimits (tests only) sets the reply limits of ratelimit.go, so a test can reach them with a few
// requests.
func WithReplyLimits(perRequester, global int) KernelOption {
	return func(k *LinuxKernel) { k.replyPerRequester, k.replyGlobal = perRequester, global }
}
