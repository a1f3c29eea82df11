"""DEV ONLY helpers: the demo token minter, the echo upstream and the `make run` launcher.

Nothing in production imports these; they exist so a newcomer can see the sidecar work in one
command, and so tests and benchmarks build Envoy configurations the same way `make run` does.
"""
