package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// podIPAllocator hands out loopback addresses 127.N.x.y (x in 0..255, y in 1..254) as pod IPs.
// Linux answers on every address of 127.0.0.0/8 without configuration, so a pod's process can
// bind its own address and ports never clash between pods. N is chosen per agent under an flock
// so that concurrent clusters on one machine use disjoint ranges; the lock dies with the agent.
type podIPAllocator struct {
	mu     sync.Mutex
	n      int
	lock   *os.File
	inUse  map[string]bool
	cursor int // next candidate offset, so released addresses are not reused at once
}

const (
	autoNetFirst = 77
	autoNetLast  = 126
)

func newPodIPAllocator(spec, lockDir string) (*podIPAllocator, error) {
	if err := os.MkdirAll(lockDir, 0o1777); err != nil {
		return nil, err
	}
	candidates := []int{}
	if spec == "auto" {
		for n := autoNetFirst; n <= autoNetLast; n++ {
			candidates = append(candidates, n)
		}
	} else {
		n, err := strconv.Atoi(spec)
		if err != nil || n < 1 || n > 254 {
			return nil, fmt.Errorf("--pod-net: want 'auto' or N in 1..254 (for 127.N.0.0/16), got %q", spec)
		}
		candidates = append(candidates, n)
	}
	for _, n := range candidates {
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("127.%d.lock", n)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return &podIPAllocator{n: n, lock: f, inUse: map[string]bool{}}, nil
	}
	return nil, fmt.Errorf("no free pod range: 127.N.0.0/16 for N in %v are all locked by other agents (%s)", candidates, lockDir)
}

func (a *podIPAllocator) cidr() string { return fmt.Sprintf("127.%d.0.0/16", a.n) }

func (a *podIPAllocator) close() {
	if a.lock != nil {
		a.lock.Close()
	}
}

func (a *podIPAllocator) allocate() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	const size = 256 * 254
	for i := 0; i < size; i++ {
		off := (a.cursor + i) % size
		ip := fmt.Sprintf("127.%d.%d.%d", a.n, off/254, off%254+1)
		if !a.inUse[ip] {
			a.inUse[ip] = true
			a.cursor = off + 1
			return ip, nil
		}
	}
	return "", fmt.Errorf("pod range %s exhausted", a.cidr())
}

func (a *podIPAllocator) release(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.inUse, ip)
}
