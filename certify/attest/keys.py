"""Signing keys: generate a pair, load a private key as a signer, load a pinned public key.

Keys are PEM files: PKCS#8 for the private key (mode 0600), SubjectPublicKeyInfo for
the public one. Ed25519 is the default; ECDSA P-256 is accepted because it is the key
type OpenSSF model-signing and sigstore's DSSE helpers use. Set CERTIFY_KEY_PASSWORD
to encrypt a new private key or to read an encrypted one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Literal

from certify._io import atomic_write_bytes
from certify.errors import InputError

KeyType = Literal["ed25519", "ecdsa-p256"]
KEY_TYPES: tuple[KeyType, ...] = ("ed25519", "ecdsa-p256")
PRIVATE_NAME = "certify.key"
PUBLIC_NAME = "certify.pub"
PASSWORD_ENV = "CERTIFY_KEY_PASSWORD"
MAX_KEY_BYTES = 64 * 1024


def keygen(out_dir: Path, key_type: KeyType = "ed25519",
           *, force: bool = False) -> tuple[Path, Path]:
    """Write ``certify.key`` (0600) and ``certify.pub`` into ``out_dir``; return their paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if key_type not in KEY_TYPES:
        raise InputError(f"unknown key type {key_type!r}",
                         hint=f"use one of {', '.join(KEY_TYPES)}")
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    if private_path.exists() and not force:
        raise InputError(f"{private_path} already exists; certify never overwrites a key",
                         hint="choose another --out directory, or move the old key away")
    key: Any = (ed25519.Ed25519PrivateKey.generate() if key_type == "ed25519"
                else ec.generate_private_key(ec.SECP256R1()))
    password = os.environ.get(PASSWORD_ENV)
    encryption: Any = (serialization.BestAvailableEncryption(password.encode()) if password
                       else serialization.NoEncryption())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    encryption)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(private_path, private_pem, mode=0o600)
    atomic_write_bytes(public_path, public_pem, mode=0o644)
    return private_path, public_path


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_BYTES:
            raise InputError(f"{what} {path} is larger than {MAX_KEY_BYTES} bytes; not a PEM key")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist",
                         hint="create a key pair with `certify keygen --out DIR`") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory; give the key file") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None


def _check_private_mode(path: Path) -> None:
    # Like ssh: a private key others can read is no longer private.
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise InputError(f"private key {path} is readable by other users "
                         f"(mode {stat.S_IMODE(path.stat().st_mode):04o})",
                         hint=f"restrict it: chmod 600 {path}")


def _check_supported(key: Any, path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    public = key.public_key() if hasattr(key, "private_bytes") else key
    if isinstance(public, ed25519.Ed25519PublicKey):
        return
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return
    raise InputError(f"key {path} is a {type(public).__name__}; certify signs with Ed25519 or "
                     "ECDSA P-256 only", hint="create a supported key with `certify keygen`")


def load_signer(path: Path) -> tuple[Any, bytes]:
    """A securesystemslib CryptoSigner for the PEM private key at ``path``, and the PEM of
    its public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    data = _read_key_file(path, "private key")
    _check_private_mode(path)
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = load_pem_private_key(data, password=password.encode() if password else None)
    except TypeError:
        raise InputError(f"private key {path} is encrypted",
                         hint=f"set {PASSWORD_ENV} to its password") from None
    except ValueError:
        hint = ("this looks like a public key; sign with the private key (certify.key)"
                if b"PUBLIC KEY" in data else "give the PKCS#8 PEM file `certify keygen` wrote")
        raise InputError(f"{path} is not a readable PEM private key (or the password is wrong)",
                         hint=hint) from None
    _check_supported(key, path)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return CryptoSigner(key), pem


def load_public_key(path: Path) -> Any:
    """The pinned public key (securesystemslib SSlibKey) an auditor verifies against."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    data = _read_key_file(path, "public key")
    if b"PRIVATE KEY" in data:
        raise InputError(f"{path} is a private key; verify with the public key",
                         hint="pass the certify.pub that `certify keygen` wrote next to it")
    try:
        key = load_pem_public_key(data)
    except ValueError:
        raise InputError(f"{path} is not a PEM public key",
                         hint="pass the certify.pub that `certify keygen` wrote") from None
    _check_supported(key, path)
    return SSlibKey.from_crypto(key)


def describe(key: Any) -> str:
    """``ed25519 key 1a2b…`` — the key type and its keyid, for tables and the report cover."""
    return f"{key.keytype} key {key.keyid}"
