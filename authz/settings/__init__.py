"""Settings: what `authz serve` was asked to do, as frozen sections, one per concern.

Each setting is declared once, as a field of its section (authz.settings.sections and the
modules it gathers: kubernetes, ratelimit; see authz.settings.declare): its default, flag,
environment variable, kind and help. The command line (authz.settings.flags), validation
and the README's flag table derive from that declaration. Everything below the CLI receives
only the section it needs, never argparse namespaces or os.environ.
"""

from authz.settings.connections import ConnectionSettings
from authz.settings.kubernetes import KubernetesSettings
from authz.settings.listen import ListenAddress
from authz.settings.ratelimit import RateLimitSettings
from authz.settings.sections import (
    ClientSettings,
    IntrospectionSettings,
    JwksSettings,
    PolicySettings,
    ServerSettings,
    Settings,
    TelemetrySettings,
    TokenSettings,
)
from authz.settings.tls import TlsSettings

__all__ = [
    "ClientSettings",
    "ConnectionSettings",
    "IntrospectionSettings",
    "JwksSettings",
    "KubernetesSettings",
    "ListenAddress",
    "PolicySettings",
    "RateLimitSettings",
    "ServerSettings",
    "Settings",
    "TelemetrySettings",
    "TlsSettings",
    "TokenSettings",
]
