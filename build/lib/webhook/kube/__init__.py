"""The API server's client plumbing shared by the shells that talk to a cluster: raw JSON calls,
pagination, and where the client configuration comes from."""
