"""authz: an authorization sidecar for Envoy's ext_authz filter.

Envoy asks over gRPC whether each request may pass; the sidecar validates the OAuth 2.0 bearer
token (a JWT), checks the scopes the matched rule needs and answers allow (with header rewrites)
or deny (with a proper HTTP error). Policies are AuthPolicy resources (authz.dev/v1alpha1) read
from files or watched in Kubernetes.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("authz")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# Before any other module of the package loads: compiled or source (authz/compiled.py).
from authz import compiled as _compiled  # noqa: F401
