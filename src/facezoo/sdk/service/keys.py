"""API keys and binding rules of `facezoo serve`: where the key comes from, how strong it must be, who may skip it."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from ...errors import ConfigError

API_KEY_ENV = "FACEZOO_API_KEY"
# A key is a bearer secret sent with every request: at least 16 printable ASCII characters (no spaces) with at least
# 8 different ones, e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"` (43 characters, 256 bits).
MIN_KEY_CHARS = 16
MIN_KEY_DISTINCT = 8
_MAKE_ONE = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


def check_api_key(key: str, where: str = "the API key") -> str:
    """`key` when it is strong enough (MIN_KEY_CHARS printable ASCII, MIN_KEY_DISTINCT distinct), else ConfigError."""
    if not all(33 <= ord(c) <= 126 for c in key):
        raise ConfigError(
            f"{where}: use printable ASCII characters without spaces (it travels in an HTTP header); {_MAKE_ONE}."
        )
    if len(key) < MIN_KEY_CHARS or len(set(key)) < MIN_KEY_DISTINCT:
        raise ConfigError(
            f"{where} is too weak ({len(key)} characters, {len(set(key))} distinct): the server needs at least "
            f"{MIN_KEY_CHARS} characters with at least {MIN_KEY_DISTINCT} different ones; {_MAKE_ONE}."
        )
    return key


def load_api_key(path=None, env: dict | None = None) -> str | None:
    """The API key from `path` (first line, stripped) or else $FACEZOO_API_KEY; None when neither gives one.
    A key that is too weak (check_api_key) is a ConfigError naming its source."""
    env = os.environ if env is None else env
    if path is not None:
        p = Path(path)
        try:
            key = p.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read the API key file ({e}). Check --api-key-file.") from None
        if not key or not key[0].strip():
            raise ConfigError(f"{p}: the API key file is empty. Put one key on its first line.")
        return check_api_key(key[0].strip(), f"{p}: the API key")
    key = env.get(API_KEY_ENV, "").strip()
    return check_api_key(key, f"${API_KEY_ENV}") if key else None


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_setup(host: str, api_key: str | None, insecure_no_auth: bool) -> None:
    """Refuse to serve without a strong key, unless asked for explicitly and only on a loopback address."""
    if api_key is not None:
        if insecure_no_auth:
            raise ConfigError("both an API key and --insecure-no-auth were given; choose one.")
        check_api_key(api_key)
        return
    if not insecure_no_auth:
        raise ConfigError(
            f"no API key: pass --api-key-file FILE or set ${API_KEY_ENV} (or, for local testing "
            "only, --insecure-no-auth with a loopback --host)."
        )
    if not is_loopback(host):
        raise ConfigError(
            f"--insecure-no-auth serves without authentication and is only allowed on a loopback "
            f"address (127.0.0.1, ::1, localhost), not '{host}'. Give an API key to bind {host}."
        )
