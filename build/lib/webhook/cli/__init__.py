"""The command line and the application's assembly: the only package that wires the shells
together (serve, auditor, check, audit, certs, codes, policy)."""
