"""Run the real Envoy on the bootstrap the chart renders, as the pod would.

`materialize` lays out the Envoy container's volume mounts in a local directory (ConfigMaps from the
rendering, Secrets from generated TLS material, emptyDirs empty) and rewrites the mount paths in the
mounted files and in the container's args. A file the bootstrap names but no mount provides is
therefore missing here too, and Envoy fails as it would in the pod.
"""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.deploy.chart import Rendered

ENVOY = str(Path(sys.executable).with_name("envoy"))


def envoy_version() -> str:
    """`1.40.0` from `envoy --version`."""
    out = subprocess.run([ENVOY, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"/(\d+\.\d+\.\d+)/", out)
    assert match, out
    return match.group(1)


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class TlsMaterial:
    """A CA, a server certificate for the test hosts and a client certificate, all from the CA."""

    ca: Pem
    server: Pem
    client: Pem

    def secrets(self) -> dict[str, dict[str, bytes]]:
        """The Secrets the TLS scenarios reference, by name, as {file: content}."""
        return {
            "gateway-tls": {"tls.crt": self.server.cert, "tls.key": self.server.key},
            "client-ca": {"ca.crt": self.ca.cert},
        }


def _issue(
    subject: str,
    *,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    sans: list[str],
    usage: x509.ObjectIdentifier | None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return Pem(
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def tls_material() -> TlsMaterial:
    ca_cert, ca_key = _issue("authz test CA", issuer=None, sans=[], usage=None)
    issuer = (ca_cert.subject, ca_key)
    server = _issue(
        "api.example.com",
        issuer=issuer,
        sans=["api.example.com", "*.shop.example.com"],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = _issue(
        "client.example.com",
        issuer=issuer,
        sans=["client.example.com"],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return TlsMaterial(ca=_pem(ca_cert, ca_key), server=_pem(*server), client=_pem(*client))


@dataclass(frozen=True)
class Materialized:
    """The Envoy container laid out under `root`: its args and where each mount landed."""

    root: Path
    args: list[str]
    mounts: dict[str, Path]

    @property
    def config_path(self) -> Path:
        return Path(self.args[self.args.index("--config-path") + 1])


def rewrite_paths(text: str, mounts: Mapping[str, Path]) -> str:
    # Longest mount path first, and only whole path components: /etc/envoy is not /etc/envoy-tls.
    for mount_path in sorted(mounts, key=len, reverse=True):
        text = re.sub(re.escape(mount_path) + r"(?![\w.-])", str(mounts[mount_path]), text)
    return text


def write_secret_volume(directory: Path, files: Mapping[str, bytes], *, generation: int) -> None:
    """Lay out (or update) a Secret volume as the kubelet does: the files live in a timestamped
    directory, `..data` links to it and each key links through `..data`; an update writes a new
    directory and renames a new `..data` link over the old one, atomically."""
    version = directory / f"..2026_01_01_00_00_{generation:02d}.000000000"
    version.mkdir()
    for name, data in files.items():
        (version / name).write_bytes(data)
    (directory / "..data_tmp").symlink_to(version.name)
    (directory / "..data_tmp").replace(directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


def materialize(
    rendered: Rendered, root: Path, *, secrets: Mapping[str, Mapping[str, bytes]]
) -> Materialized:
    envoy = rendered.container("envoy")
    volumes = {v["name"]: v for v in rendered.pod_spec["volumes"]}
    mounts: dict[str, Path] = {}
    configmap_files: list[Path] = []
    for mount in envoy["volumeMounts"]:
        local = root / mount["name"]
        local.mkdir(parents=True)
        mounts[mount["mountPath"]] = local
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for file, content in rendered.configmap_data(volume["configMap"]["name"]).items():
                (local / file).write_text(content)
                configmap_files.append(local / file)
        elif "secret" in volume:
            write_secret_volume(local, secrets[volume["secret"]["secretName"]], generation=0)
        else:
            assert "emptyDir" in volume, volume
    for path in configmap_files:
        path.write_text(rewrite_paths(path.read_text(), mounts))
    args = [rewrite_paths(arg, mounts) for arg in envoy["args"]]
    return Materialized(root=root, args=args, mounts=mounts)


@dataclass(frozen=True)
class Validation:
    ok: bool
    output: str


def validate(materialized: Materialized) -> Validation:
    """`envoy --mode validate` with the container's own arguments."""
    proc = subprocess.run(
        [ENVOY, *materialized.args, "--mode", "validate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = proc.stdout + proc.stderr
    return Validation(ok=proc.returncode == 0 and " OK" in output, output=output)


class EnvoyProcess:
    """Envoy serving a materialized bootstrap; stopped by `stop()`."""

    def __init__(
        self, materialized: Materialized, *, log: Path, extra_args: Sequence[str] = ()
    ) -> None:
        self.log = log
        self._log_file = log.open("wb")
        args = list(materialized.args)
        args[args.index("--concurrency") + 1] = "1"  # one worker is plenty for a test
        self.proc = subprocess.Popen(
            [ENVOY, *args, *extra_args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_file.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def short_tmpdir() -> Path:
    """A directory with a short path: Unix socket paths are limited to about 100 bytes."""
    return Path(tempfile.mkdtemp(prefix="authz-"))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
