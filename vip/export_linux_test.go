//go:build linux

package vip

// WithoutARPFilter (tests only) opens the ARP socket without its kernel filter, so that a flood reaches
// the userspace checks: the responder must survive that too.
func WithoutARPFilter() KernelOption { return func(k *LinuxKernel) { k.noFilter = true } }
