"""User-space agent programs, written only against `kernel.syscall.AgentContext`."""
