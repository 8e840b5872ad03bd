package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcSample is one reading of a process's CPU time and memory from /proc.
type ProcSample struct {
	At  time.Time
	CPU time.Duration // user + system, all threads
	RSS int64         // bytes, VmRSS
	HWM int64         // bytes, VmHWM: the peak RSS so far
	// Parts holds one sample per process when this one is the sum of
	// several (SumSamples).
	Parts []ProcSample
}

// SumSamples adds CPU, RSS and HWM of samples of several processes (the
// servers of one cluster) and keeps each in Parts. At is the latest.
func SumSamples(parts []ProcSample) ProcSample {
	var s ProcSample
	for _, p := range parts {
		s.CPU += p.CPU
		s.RSS += p.RSS
		s.HWM += p.HWM
		if p.At.After(s.At) {
			s.At = p.At
		}
	}
	s.Parts = parts
	return s
}

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status. CPU has a
// resolution of 10 ms (clock ticks).
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name, in parentheses, may hold spaces: fields start
	// after the last ')'. Field 3 (state) is then fields[0]; utime (14)
	// and stime (15) are fields[11] and fields[12].
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, errors.New("loadgen: unexpected /proc stat format")
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 13 {
		return s, errors.New("loadgen: short /proc stat")
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return s, errors.New("loadgen: bad utime/stime in /proc stat")
	}
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	s.RSS = statusKB(status, "VmRSS:") * 1024
	s.HWM = statusKB(status, "VmHWM:") * 1024
	return s, nil
}

func statusKB(status []byte, key string) int64 {
	i := bytes.Index(status, []byte(key))
	if i < 0 {
		return 0
	}
	line := status[i+len(key):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	f := bytes.Fields(line)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(string(f[0]), 10, 64)
	return n
}

// selfCPU is this process's user + system CPU time, with microsecond
// resolution (getrusage).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfRSS is this process's resident memory in bytes.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return statusKB(b, "VmRSS:") * 1024
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := bytes.Fields(b)
	if len(f) < 3 {
		return ""
	}
	return string(bytes.Join(f[:3], []byte(" ")))
}
