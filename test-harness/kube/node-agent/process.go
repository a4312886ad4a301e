package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// hostProcess is one container instance: a host process leading its own process group.
type hostProcess struct {
	pid int
	cmd *exec.Cmd
}

// startProcess runs argv with exactly env, in dir, stdout and stderr appended to logPath, stdin
// from /dev/null, as the leader of a new process group (so the whole group can be signalled), as
// cred's user and groups when given (the container's runAsUser/runAsGroup; no other groups).
func startProcess(argv, env []string, dir, logPath string, cred *syscall.Credential) (*hostProcess, error) {
	path, err := lookPath(argv[0], env, dir)
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := &exec.Cmd{
		Path:        path,
		Args:        argv,
		Env:         env,
		Dir:         dir,
		Stdout:      logf,
		Stderr:      logf,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: cred},
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &hostProcess{pid: cmd.Process.Pid, cmd: cmd}, nil
}

// wait returns the exit code the kubelet would report (128+signal for a signalled process) and
// the terminated reason.
func (p *hostProcess) wait() (int32, string) {
	err := p.cmd.Wait()
	if err == nil {
		return 0, "Completed"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return int32(128 + int(ws.Signal())), "Error"
		}
		return int32(ee.ExitCode()), "Error"
	}
	return 128, "Error"
}

// killGroup sends SIGTERM (or SIGKILL) to the process group led by pid.
func killGroup(pid int, hard bool) {
	if pid <= 0 {
		return
	}
	sig := syscall.SIGTERM
	if hard {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-pid, sig)
}

// lookPath resolves a command as a container runtime would with the container's own PATH.
func lookPath(name string, env []string, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("exec: %q: no such executable file", name)
	}
	path := ""
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			path = kv[len("PATH="):]
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
