"""`make bench`: Envoy alone, Envoy's native jwt_authn and Envoy + this sidecar side by side;
what each part measures and how is docs/performance.md. redaction is run by hand."""
