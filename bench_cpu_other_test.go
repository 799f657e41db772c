//go:build !linux

package pkceauth

import "time"

// threadCPU and processCPU are measured on Linux only; elsewhere the CPU
// metrics of the login benchmarks read 0.
func threadCPU() time.Duration  { return 0 }
func processCPU() time.Duration { return 0 }
