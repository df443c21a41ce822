//go:build !linux

package vip

import "os/exec"

func setProcessGroup(*exec.Cmd) {}
