"""Who may call what: bearer tokens with scopes, the server interceptor that checks them, and
TLS credentials for servers and clients."""
