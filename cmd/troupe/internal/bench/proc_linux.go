package bench

import "syscall"

// memberProcAttr makes a member die with the benchmark, even a killed one.
func memberProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
