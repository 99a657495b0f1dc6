package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports; reading it properly
// needs sysconf(_SC_CLK_TCK), which is cgo.
const clockTicks = 100

// ProcSample is one reading of a process's counters in /proc.
type ProcSample struct {
	// CPU is user plus system time of all threads since the process
	// started (10ms resolution).
	CPU time.Duration
	// RSS is the resident set now (VmRSS); PeakRSS its high-water mark
	// since the process started (VmHWM).
	RSS, PeakRSS int64
	// ChildCPU is the part of CPU spent by the process's descendants, in
	// a sample of a process tree ([ReadProcTree]).
	ChildCPU time.Duration
}

// ReadProc reads the counters of process pid; pid 0 is this process.
func ReadProc(pid int) (ProcSample, error) {
	s, _, err := readProc(pid)
	return s, err
}

// ReadProcTree reads the counters of process pid and of every process
// under it (mcp-bridge's Portcullis runs its upstream as a child), added
// together: CPU includes the descendants' time, those running and those
// that exited and were waited for; RSS and PeakRSS are sums, so PeakRSS
// bounds the tree's peak from above. Descendants are found in
// /proc/<pid>/task/<tid>/children; a kernel without those files shows
// none.
func ReadProcTree(pid int) (ProcSample, error) {
	s, waited, err := readProc(pid)
	if err != nil {
		return s, err
	}
	s.ChildCPU = waited
	for _, c := range descendants(pid) {
		cs, cwaited, err := readProc(c)
		if err != nil {
			continue // exited meanwhile: its time is in its parent's waited time once reaped
		}
		s.ChildCPU += cs.CPU + cwaited
		s.RSS += cs.RSS
		s.PeakRSS += cs.PeakRSS
	}
	s.CPU += s.ChildCPU
	return s, nil
}

// readProc reads the counters of process pid (0 is this process), and
// the CPU time of its children that exited and were waited for.
func readProc(pid int) (s ProcSample, waited time.Duration, err error) {
	dir := procDir(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, 0, err
	}
	if s.CPU, waited, err = parseStatCPU(stat); err != nil {
		return s, 0, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, 0, err
	}
	s.RSS, s.PeakRSS = parseStatusMemory(status)
	return s, waited, nil
}

func procDir(pid int) string {
	if pid == 0 {
		return "/proc/self"
	}
	return "/proc/" + strconv.Itoa(pid)
}

// descendants returns the processes under pid, children first.
func descendants(pid int) []int {
	var out []int
	for i, next := 0, []int{pid}; i < len(next); i++ {
		files, _ := filepath.Glob(procDir(next[i]) + "/task/*/children")
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, field := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(field); err == nil {
					next = append(next, c)
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// parseStatCPU returns utime+stime, and cutime+cstime (the time of
// children that exited and were waited for), from the contents of
// /proc/<pid>/stat. The command name (field 2) is in parentheses and may
// hold spaces and parentheses itself, so fields are counted from the last
// ')'.
func parseStatCPU(stat []byte) (cpu, waited time.Duration, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime, stime, cutime and cstime are fields
	// 14 to 17.
	if len(f) < 15 {
		return 0, 0, errors.New("too few fields")
	}
	var ticks [4]int64
	for j := range ticks {
		if ticks[j], err = strconv.ParseInt(f[11+j], 10, 64); err != nil {
			return 0, 0, err
		}
	}
	toDuration := func(t int64) time.Duration { return time.Duration(t) * time.Second / clockTicks }
	return toDuration(ticks[0] + ticks[1]), toDuration(ticks[2] + ticks[3]), nil
}

// parseStatusMemory returns VmRSS and VmHWM, in bytes, from the contents
// of /proc/<pid>/status.
func parseStatusMemory(status []byte) (rss, hwm int64) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(value) // "12345 kB"
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// ProcUsage is what a process used during the measured window.
type ProcUsage struct {
	PID        int     `json:"pid,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerRequest is CPU time per answered request, in microseconds: on
	// a shared machine it drifts less than throughput does.
	CPUPerRequest float64 `json:"cpu_per_request_us"`
	// ChildCPUSeconds is the part of CPUSeconds spent by the server's
	// descendants (mcp-bridge's upstream); the server's own CPU is the
	// difference.
	ChildCPUSeconds float64 `json:"child_cpu_seconds,omitempty"`
	// Cores is CPUSeconds over the window's length: how many cores the
	// process kept busy.
	Cores        float64 `json:"cores"`
	RSSBytes     int64   `json:"rss_bytes"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

// ProcMeter is a [Meter] of a process's CPU and memory: the server's (PID,
// with its descendants: see [ReadProcTree]) or, with Self, this process's
// own, reported as the client's.
type ProcMeter struct {
	PID  int
	Self bool

	begin, end ProcSample
	err        error
}

// Begin samples the process when the window opens.
func (m *ProcMeter) Begin() error {
	m.begin, m.err = m.read()
	return m.err
}

// End samples the process when the window closes.
func (m *ProcMeter) End() error {
	if m.err != nil {
		return nil
	}
	m.end, m.err = m.read()
	return m.err
}

// Report adds the process's usage to r.
func (m *ProcMeter) Report(r *Result) {
	if m.err != nil || m.end.CPU == 0 && m.end.PeakRSS == 0 {
		return
	}
	cpu := (m.end.CPU - m.begin.CPU).Seconds()
	u := &ProcUsage{PID: m.PID, CPUSeconds: cpu, ChildCPUSeconds: (m.end.ChildCPU - m.begin.ChildCPU).Seconds(),
		RSSBytes: m.end.RSS, PeakRSSBytes: m.end.PeakRSS}
	if r.Seconds > 0 {
		u.Cores = cpu / r.Seconds
	}
	if n := r.Requests + r.Errors; n > 0 {
		u.CPUPerRequest = cpu * 1e6 / float64(n)
	}
	if m.Self {
		r.Client = u
	} else {
		r.Server = u
	}
}

// read samples this process alone (its children are the servers), or the
// server with its descendants.
func (m *ProcMeter) read() (ProcSample, error) {
	if m.Self {
		return ReadProc(0)
	}
	return ReadProcTree(m.PID)
}
