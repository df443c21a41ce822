//go:build !linux

package vip_test

// setNice is a no-op where the agent does not renice itself either.
func setNice(int) error { return nil }
