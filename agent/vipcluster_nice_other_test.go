//go:build !linux

package agent

// setNice is a no-op where the agent does not renice itself either.
func setNice(int) error { return nil }
