//go:build !linux

package bench

import "syscall"

// memberProcAttr: only Linux ties a child's life to its parent's; the
// benchmark stops its members itself on every way out.
func memberProcAttr() *syscall.SysProcAttr { return nil }
