"""Backend faults through the Ollama stand-in server: retries, back-off, the pool's failover."""
