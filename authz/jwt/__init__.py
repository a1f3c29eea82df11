"""Bearer tokens: extraction, verification and the issuers' signing keys.

Nothing here knows about policies or Envoy: the policy layer compiles issuers into
`IssuerSpec`s bound to `KeyProvider`s, and the pipeline asks the `Verifier` for claims.
"""
