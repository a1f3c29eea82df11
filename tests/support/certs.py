"""Certificates for the TLS tests: a CA, and server and client certificates it issues.

Made with the `cryptography` package on the fly (EC P-256: fast to generate), so no key is
checked in. `Authority.create("ca")` makes a self-signed CA; `issue` a leaf certificate for a
server (names: localhost and 127.0.0.1) or a client. `write` lays the files out as the kubelet
mounts a Secret - each file a symlink through `..data` to a timestamped directory - and
`renew` replaces them the way the kubelet does when cert-manager renews the Secret: a new
directory, then one atomic rename of the `..data` symlink.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_SERIALS = count(1000)
_VERSIONS = count(1)
_DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM."""

    cert: bytes
    key: bytes
    certificate: x509.Certificate

    @property
    def common_name(self) -> str:
        return str(self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@dataclass(frozen=True)
class Authority:
    """A CA that issues server and client certificates."""

    issued: Issued
    _key: ec.EllipticCurvePrivateKey

    @property
    def cert(self) -> bytes:
        return self.issued.cert

    @classmethod
    def create(cls, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(next(_SERIALS))
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        return cls(Issued(pem, _key_pem(key), certificate), key)

    def issue(self, name: str, *, client: bool = False) -> Issued:
        """A leaf certificate: for a server (localhost, 127.0.0.1) or, `client`, a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.issued.certificate.subject)
            .public_key(key.public_key())
            .serial_number(next(_SERIALS))
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 7 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if not client:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        certificate = builder.sign(self._key, hashes.SHA256())
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        return Issued(pem, _key_pem(key), certificate)


@dataclass(frozen=True)
class SecretVolume:
    """A directory laid out like a mounted kubernetes.io/tls Secret."""

    root: Path

    @property
    def cert(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls.key"

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    def renew(self, issued: Issued, *, ca: bytes | None = None) -> None:
        """Swap every file at once, as the kubelet does (one rename of `..data`)."""
        version = self.root / f"..v{next(_VERSIONS)}"
        version.mkdir()
        (version / "tls.crt").write_bytes(issued.cert)
        (version / "tls.key").write_bytes(issued.key)
        (version / "tls.key").chmod(0o600)
        if ca is not None:
            (version / "ca.crt").write_bytes(ca)
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, self.root / "..data")
        for file in version.iterdir():
            link = self.root / file.name
            if not link.is_symlink():
                link.symlink_to(f"..data/{file.name}")


def secret_volume(root: Path, issued: Issued, *, ca: bytes | None = None) -> SecretVolume:
    """`issued` (and a CA bundle) in a new Secret-like directory at `root`."""
    root.mkdir(parents=True)
    volume = SecretVolume(root)
    volume.renew(issued, ca=ca)
    return volume


def write_pair(directory: Path, issued: Issued, *, name: str) -> tuple[Path, Path]:
    """`issued` as NAME.crt and NAME.key in `directory` (a client's files)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(issued.cert)
    key.write_bytes(issued.key)
    return cert, key
