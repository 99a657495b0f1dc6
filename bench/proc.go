package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
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
}

// ReadProc reads the counters of process pid; pid 0 is this process.
func ReadProc(pid int) (ProcSample, error) {
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	var s ProcSample
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, err
	}
	if s.CPU, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, err
	}
	s.RSS, s.PeakRSS = parseStatusMemory(status)
	return s, nil
}

// parseStatCPU returns utime+stime from the contents of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("too few fields")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
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
	// Cores is CPUSeconds over the window's length: how many cores the
	// process kept busy.
	Cores        float64 `json:"cores"`
	RSSBytes     int64   `json:"rss_bytes"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

// ProcMeter is a [Meter] of a process's CPU and memory: the server's (PID)
// or, with Self, this process's own, reported as the client's.
type ProcMeter struct {
	PID  int
	Self bool

	begin, end ProcSample
	err        error
}

// Begin samples the process when the window opens.
func (m *ProcMeter) Begin() error {
	m.begin, m.err = ReadProc(m.pid())
	return m.err
}

// End samples the process when the window closes.
func (m *ProcMeter) End() error {
	if m.err != nil {
		return nil
	}
	m.end, m.err = ReadProc(m.pid())
	return m.err
}

// Report adds the process's usage to r.
func (m *ProcMeter) Report(r *Result) {
	if m.err != nil || m.end.CPU == 0 && m.end.PeakRSS == 0 {
		return
	}
	cpu := (m.end.CPU - m.begin.CPU).Seconds()
	u := &ProcUsage{PID: m.PID, CPUSeconds: cpu, RSSBytes: m.end.RSS, PeakRSSBytes: m.end.PeakRSS}
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

func (m *ProcMeter) pid() int {
	if m.Self {
		return 0
	}
	return m.PID
}
