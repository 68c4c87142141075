package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Restart delays of the -exec command: doubled from the first to the last;
// back to the first after a run at least as long as the last.
const (
	execFirstRestart = time.Second
	execLastRestart  = 30 * time.Second
)

// supervisor runs the -exec command with /bin/sh -c in its own process
// group, restarts it with backoff when it exits, and stops it (SIGTERM to
// the group, then SIGKILL after a timeout) on stop.
type supervisor struct {
	command     string
	env         func() []string // added to the agent's environment at each start
	stopTimeout time.Duration
	log         *slog.Logger
	out         io.Writer // the command's stdout and stderr
	cancel      context.CancelFunc
	done        chan struct{}
}

func startSupervisor(command string, env func() []string, stopTimeout time.Duration, log *slog.Logger, out io.Writer) *supervisor {
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{command: command, env: env, stopTimeout: stopTimeout, log: log, out: out, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
	return s
}

// stop stops the command and waits for it to exit.
func (s *supervisor) stop() {
	s.cancel()
	<-s.done
}

func (s *supervisor) run(ctx context.Context) {
	delay := execFirstRestart
	for {
		started := time.Now()
		if ok := s.once(ctx); !ok {
			return
		}
		if time.Since(started) >= execLastRestart {
			delay = execFirstRestart
		}
		s.log.Info("restarting the -exec command", "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, execLastRestart)
	}
}

// once runs the command until it exits (true) or ctx ends (false, the
// command stopped).
func (s *supervisor) once(ctx context.Context) bool {
	env := s.env()
	cmd := exec.Command("/bin/sh", "-c", s.command)
	cmd.Env = append(os.Environ(), env...)
	// Through a pipe the agent copies from, not the agent's own stderr:
	// a command that outlives the agent (kill -9) does not hold it open.
	out := struct{ io.Writer }{s.out}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second // a child left holding its output open does not hold us
	started := time.Now()
	if err := cmd.Start(); err != nil {
		s.log.Error("cannot start the -exec command", "command", s.command, "err", err)
		return ctx.Err() == nil
	}
	s.log.Info("started the -exec command", "command", s.command, "pid", cmd.Process.Pid, "env", env)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		status := "exit status 0"
		if err != nil {
			status = err.Error()
		}
		s.log.Warn("the -exec command exited", "status", status, "ran", time.Since(started).Round(time.Millisecond))
		return ctx.Err() == nil
	case <-ctx.Done():
	}
	pgid := -cmd.Process.Pid
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		s.log.Warn("cannot signal the -exec command", "err", err)
	}
	select {
	case <-exited:
		s.log.Info("the -exec command stopped")
	case <-time.After(s.stopTimeout):
		s.log.Warn("the -exec command did not exit after SIGTERM: killing it", "timeout", s.stopTimeout)
		syscall.Kill(pgid, syscall.SIGKILL)
		<-exited
	}
	return false
}
