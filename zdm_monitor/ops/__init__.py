"""The operator's tools: the zdm-monitor command, its preflight check and the nginx site."""
