package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of utime/stime in /proc/PID/stat; it is 100 on every Linux architecture Go runs on.
const clockTick = 100

// cpuTimes is the process's user and system CPU time so far, including threads that have exited. The sum is the scheduler's exact run time; the
// kernel splits it between the two by where its ticks found the process, so the split is a sample.
func cpuTimes(pid int) (user, system time.Duration, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// comm (field 2) may hold spaces; the fields after it start after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat utime/stime: %q %q", pid, f[11], f[12])
	}
	return time.Duration(u) * time.Second / clockTick, time.Duration(st) * time.Second / clockTick, nil
}

// rssKiB is VmRSS from /proc/PID/status.
func rssKiB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// fdCount is the number of open file descriptors of the process.
func fdCount(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// pinProcess sets the CPU affinity of every thread of pid. Threads created later inherit it from their creator,
// so a second pass catches any thread born during the first.
func pinProcess(pid int, cpus ...int) error {
	var set unix.CPUSet
	for _, cpu := range cpus {
		set.Set(cpu)
	}
	for range 3 {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(filepath.Base(t))
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pin thread %d of %d to CPUs %v: %w", tid, pid, cpus, err)
			}
		}
	}
	return nil
}

// raiseNoFile lifts the soft descriptor limit to the hard one; children started afterwards inherit it.
func raiseNoFile() (uint64, error) {
	// syscall.Setrlimit, not x/sys/unix: it also stops os/exec from restoring the pre-raise soft limit in children.
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", rl.Max, err)
	}
	return rl.Cur, nil
}

// peakRSSKiB is VmHWM from /proc/PID/status: the most the process has had resident.
func peakRSSKiB(pid int) (int64, error) { return statusKiB(pid, "VmHWM:") }

func statusKiB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// kernelCounters are the network namespace's TCP counters that tell dropped or repeated SYNs.
type kernelCounters struct {
	listenOverflows, listenDrops, synRetrans int64
}

func (k kernelCounters) minus(o kernelCounters) kernelCounters {
	return kernelCounters{k.listenOverflows - o.listenOverflows, k.listenDrops - o.listenDrops, k.synRetrans - o.synRetrans}
}

// readKernelCounters reads TcpExt ListenOverflows, ListenDrops and TCPSynRetrans from /proc/net/netstat: a
// header line of names, then a line of values, per group.
func readKernelCounters() (kernelCounters, error) {
	data, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return kernelCounters{}, err
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		var k kernelCounters
		for j, n := range names {
			v, _ := strconv.ParseInt(values[j], 10, 64)
			switch n {
			case "ListenOverflows":
				k.listenOverflows = v
			case "ListenDrops":
				k.listenDrops = v
			case "TCPSynRetrans":
				k.synRetrans = v
			}
		}
		return k, nil
	}
	return kernelCounters{}, fmt.Errorf("no TcpExt in /proc/net/netstat")
}

// tcpOutSegs is Tcp OutSegs from /proc/net/snmp: the TCP segments this network namespace has sent, its
// loopback's every segment, both ends of both connections of a proxied one.
func tcpOutSegs() (int64, error) {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "Tcp:" || len(values) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "OutSegs" {
				return strconv.ParseInt(values[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no Tcp OutSegs in /proc/net/snmp")
}

// sysctlInt reads an integer sysctl of this network namespace, e.g. "net/core/somaxconn".
func sysctlInt(name string) (int, error) {
	data, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

func setSysctl(name string, v int) error {
	return os.WriteFile("/proc/sys/"+name, []byte(strconv.Itoa(v)), 0o644)
}

// loadAvg is the first field of /proc/loadavg (the 1-minute load average), or "?".
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}
