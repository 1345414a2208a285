package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's utime and stime; it
// is 100 on every Linux this runs on.
const clockTicks = 100

// cpuSample is the CPU time used so far by the server, by PostgreSQL (every
// process named postgres) and by this process, with the machine's total.
type cpuSample struct {
	at                     time.Time
	server, postgres, self time.Duration
	machineBusy            time.Duration
	// pressure is the kernel's CPU pressure stall total: time during which
	// some runnable task waited for a CPU.
	pressure time.Duration
}

func takeCPU(serverPID int) cpuSample {
	s := cpuSample{at: time.Now(), server: procCPU(serverPID), self: procCPU(os.Getpid())}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		s.postgres += procCPU(pid)
	}
	s.machineBusy = machineBusy()
	s.pressure = cpuPressure()
	return s
}

// cpuPressure reads the "some" total of /proc/pressure/cpu (PSI).
func cpuPressure() time.Duration {
	data, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				us, _ := strconv.ParseInt(v, 10, 64)
				return time.Duration(us) * time.Microsecond
			}
		}
	}
	return 0
}

// cpuUse describes the CPU used between two samples in cores.
func cpuUse(a, b cpuSample) string {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return ""
	}
	cores := func(d time.Duration) float64 { return d.Seconds() / wall }
	out := fmt.Sprintf("cpu_cores server=%.2f loadgen=%.2f", cores(b.server-a.server), cores(b.self-a.self))
	if b.postgres > 0 {
		out += fmt.Sprintf(" postgres=%.2f", cores(b.postgres-a.postgres))
	}
	out += fmt.Sprintf(" machine=%.2f", cores(b.machineBusy-a.machineBusy))
	if b.pressure > 0 {
		// The share of the window in which some task waited for a CPU:
		// near 0 the figures are the system's, far above it they are the
		// machine's.
		out += fmt.Sprintf(" cpu_wait=%.0f%%", 100*(b.pressure-a.pressure).Seconds()/wall)
	}
	return out
}

// procCPU is a process's user plus system time from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces; fields after
	// it are plain.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// machineBusy is the non-idle time of all CPUs from /proc/stat.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// perfRecorder samples the server with `perf record -g` during a window.
type perfRecorder struct {
	cmd *exec.Cmd
}

// startPerf starts perf on pid when dir is set; the output file is named
// after the run.
func startPerf(dir, name string, pid int) *perfRecorder {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		infof("perf: %v", err)
		return nil
	}
	out := filepath.Join(dir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", out)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		infof("perf: %v", err)
		return nil
	}
	infof("perf recording %s", out)
	return &perfRecorder{cmd: cmd}
}

func (p *perfRecorder) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
