"""A fleet of simulated BMCs speaking IPMI 2.0 / RMCP+ over UDP (farm-sim)."""
