"""Values for every toggle of the chart, alone and combined: each test runs over all of them.

SIDECAR scenarios render an Envoy bootstrap (checked by the real Envoy); STANDALONE ones do not.
"""

from __future__ import annotations

from typing import Any

from tests.support.policies import auth_policy, to_yaml

ROUTES: list[dict[str, Any]] = [
    {"host": "api.example.com", "pathPrefix": "/", "service": "api", "port": 8080},
    {"host": "api.example.com", "pathPrefix": "/v2/admin", "service": "admin.ops", "port": 80},
    {"host": "api.example.com", "pathPrefix": "/v2", "service": "api-v2", "port": 8080},
    {"host": "*.shop.example.com", "pathPrefix": "/cart/", "service": "cart", "port": 9000},
    {"host": "*", "pathPrefix": "/", "service": "fallback", "port": 80},
]

POLICY = to_yaml(auth_policy("api", namespace=None, hosts=["api.example.com"], rules=[]))

TLS: dict[str, Any] = {"envoy": {"tls": {"enabled": True, "secretName": "gateway-tls"}}}

MTLS: dict[str, Any] = {
    "envoy": {
        "tls": {
            "enabled": True,
            "secretName": "gateway-tls",
            "httpRedirect": False,
            "clientCASecretName": "client-ca",
            "requireClientCertificate": True,
        }
    }
}

OBSERVABILITY: dict[str, Any] = {
    "otel": {"endpoint": "http://otel-collector.observability:4317", "samplerArg": "0.25"},
    "serviceMonitor": {
        "enabled": True,
        "labels": {"release": "prometheus"},
        "scrapeTimeout": "10s",
        "relabelings": [{"action": "labeldrop", "regex": "pod_template_hash"}],
    },
}

HARDENED: dict[str, Any] = {
    "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
    "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 1},
    "networkPolicy": {
        "enabled": True,
        "allowedFrom": [{"namespaceSelector": {"matchLabels": {"edge": "true"}}}],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}, {"to": []}],
    },
}

POD_EXTRAS: dict[str, Any] = {
    "image": {"digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "extraEnv": [{"name": "AUTHZ_EXTRA", "value": "1"}],
    "introspectionSecrets": [{"namespace": "shop", "name": "idp-client"}],
    "podAnnotations": {"example.com/team": "edge"},
    "podLabels": {"example.com/tier": "edge"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "authz"}},
                    },
                }
            ]
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "authz"}},
        }
    ],
    "priorityClassName": "system-cluster-critical",
    "logAllowSampleRate": 0.1,
    "trustedProxyHops": 1,
    "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
}

SIDECAR: dict[str, dict[str, Any]] = {
    "defaults": {},
    "routes": {"routes": ROUTES},
    "tls": {**TLS, "routes": ROUTES},
    "mtls": {**MTLS, "routes": ROUTES},
    "watch-namespaces": {
        "watch": {"namespaces": ["team-a", "team-b"], "selector": "authz.dev/gateway=public"}
    },
    "files-only": {"watch": {"enabled": False}, "policies": {"api.yaml": POLICY}},
    "redis-url": {"redis": {"url": "redis://redis-master:6379/0"}},
    "redis-secret": {"redis": {"existingSecret": "redis-creds", "mode": "sentinel"}},
    "observability": OBSERVABILITY,
    "hardened": HARDENED,
    "pod-extras": {**POD_EXTRAS, "routes": ROUTES},
    "existing-serviceaccount": {"serviceAccount": {"create": False, "name": "edge-gateway"}},
    "everything": {
        **MTLS,
        **OBSERVABILITY,
        **HARDENED,
        **POD_EXTRAS,
        "routes": ROUTES,
        "policies": {"api.yaml": POLICY},
        "redis": {"url": "rediss://:secret@redis:6380/1", "mode": "cluster"},
        "envoy": {
            **MTLS["envoy"],
            "accessLog": False,
            "extAuthz": {"timeout": "0.25s", "statusOnError": 403},
            "ports": {"http": 10080, "https": 10443, "ready": 10901},
        },
    },
}

GRPC_TLS_SECRET: dict[str, Any] = {
    "mode": "standalone",
    "grpcTLS": {"enabled": True, "secretName": "authz-grpc-tls"},
}

GRPC_MTLS_CERT_MANAGER: dict[str, Any] = {
    "mode": "standalone",
    "grpcTLS": {
        "enabled": True,
        "certManager": {
            "enabled": True,
            "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
            "extraDnsNames": ["authz.example.internal"],
        },
        "clientCA": {"enabled": True},
    },
    "networkPolicy": {
        "allowedNamespaces": ["envoy-gateway-system", "istio-system"],
        "allowedFrom": [{"podSelector": {"matchLabels": {"app": "envoy"}}}],
    },
}

STANDALONE: dict[str, dict[str, Any]] = {
    "standalone": {"mode": "standalone"},
    "standalone-tls-secret": GRPC_TLS_SECRET,
    "standalone-mtls-cert-manager": GRPC_MTLS_CERT_MANAGER,
    "standalone-mtls-ca-secret": {
        **GRPC_TLS_SECRET,
        "grpcTLS": {
            **GRPC_TLS_SECRET["grpcTLS"],
            "clientCA": {"enabled": True, "secretName": "envoy-clients-ca", "key": "bundle.pem"},
        },
    },
    "standalone-everything": {
        **OBSERVABILITY,
        **HARDENED,
        **POD_EXTRAS,
        "mode": "standalone",
        "watch": {"namespaces": ["team-a"]},
        "redis": {"existingSecret": "redis-creds"},
    },
}

ALL: dict[str, dict[str, Any]] = {**SIDECAR, **STANDALONE}
