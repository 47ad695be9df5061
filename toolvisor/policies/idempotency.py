"""Idempotency key generators: pure functions of a call's tool, tenant and arguments.

Canonical JSON of a value is
``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)``; hashes are SHA-256 hex digests of its UTF-8 bytes.

Key layout (every component percent-encoded, so ``:`` only ever separates them and the
encoding is injective: different (tool, tenant, kind, digest) never give the same key)::

    idem:<tool>:<tenant>:<kind>:<sha256>

``<tenant>`` is ``-`` without a tenant and ``t=<tenant>`` with one, so tenants never
share keys (not even with the tenant-less namespace); ``<kind>`` is ``fields`` or ``args``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import attrs

from toolvisor._json import canonical_dumps
from toolvisor.errors import FieldError, ValidationError

__all__ = [
    "FieldBasedIdempotencyKeyGenerator",
    "HashIdempotencyKeyGenerator",
    "IIdempotencyKeyGenerator",
    "canonical_json",
    "default_key_generator",
    "fingerprint",
    "generator_takes_ctx",
]


@runtime_checkable
class IIdempotencyKeyGenerator(Protocol):
    """Builds the idempotency key of a call."""

    def generate(
        self,
        tool_name: str,
        args: Mapping[str, object],
        *,
        key_fields: Sequence[str] = (),
        tenant_id: str | None = None,
        ctx: Any = None,
    ) -> str:
        """Return the key of calling ``tool_name`` with ``args`` for ``tenant_id``.

        ``ctx`` is the call's ``ExecutionContext``. Generators written without the ``ctx``
        keyword keep working: they are called without it.
        """


def canonical_json(value: object) -> str:
    """Serialise ``value`` canonically (sorted keys, no spaces, no NaN).

    Raises:
        ValidationError: ``value`` is not JSON data (the caller's fault).
    """
    try:
        return canonical_dumps(value)
    except (TypeError, ValueError) as exc:
        raise _not_json(exc) from exc


def _not_json(exc: Exception) -> ValidationError:
    return ValidationError(
        [FieldError("", f"arguments must be JSON data to derive an idempotency key: {exc}")]
    )


class _Digest(Protocol):
    def hexdigest(self) -> str: ...


def _sha256_constructor() -> Callable[[bytes], _Digest]:
    """CPython's own SHA-256 when it has one: the same digests as ``hashlib.sha256``, which
    is OpenSSL's and costs more per call on short texts (OpenSSL 3 looks up its
    implementation on every new hash); the keys are hashed on every idempotent call."""
    for name in ("_sha2", "_sha256"):  # Python >= 3.12, 3.11
        try:
            new: Callable[[bytes], _Digest] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        return new
    return hashlib.sha256


_new_sha256 = _sha256_constructor()


def _sha256(text: str) -> str:
    return _new_sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(args: Mapping[str, object]) -> str:
    """SHA-256 hex of the canonical JSON of all ``args``.

    Stored next to a key to detect the same key reused with other arguments.
    """
    # canonical_json and _sha256 inlined: every idempotent call comes here.
    value = args if type(args) is dict else dict(args)
    try:
        text = canonical_dumps(value)
    except (TypeError, ValueError) as exc:
        raise _not_json(exc) from exc
    return _new_sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _pointer(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")


def _key(tool_name: str, tenant_id: str | None, kind: str, digest: str) -> str:
    return _prefix(tool_name, tenant_id, kind) + digest


@functools.lru_cache(maxsize=4096)  # tool names and tenants repeat across calls
def _prefix(tool_name: str, tenant_id: str | None, kind: str) -> str:
    tenant = "-" if tenant_id is None else "t=" + _encode(tenant_id)
    return f"idem:{_encode(tool_name)}:{tenant}:{kind}:"


def _encode(component: str) -> str:
    # Percent-encoding with nothing "safe" is injective and never emits ':'.
    return quote(component, safe="", errors="surrogatepass")


@attrs.frozen
class FieldBasedIdempotencyKeyGenerator:
    """Key from the values of the spec's ``idempotency.key_fields``.

    ``digest = sha256(canonical_json({field: args[field] for field in key_fields}))``: the
    order of ``key_fields`` does not matter, other arguments do not take part.

    Raises ``ValidationError`` naming every missing field, or when ``key_fields`` is empty.

    Example::

        gen = FieldBasedIdempotencyKeyGenerator()
        gen.generate("process_payment", {"transaction_id": "tx-1", "amount": 5},
                     key_fields=["transaction_id"], tenant_id="acme")
        # 'idem:process_payment:t=acme:fields:<sha256 of {"transaction_id":"tx-1"}>'
    """

    def generate(
        self,
        tool_name: str,
        args: Mapping[str, object],
        *,
        key_fields: Sequence[str] = (),
        tenant_id: str | None = None,
        ctx: Any = None,
    ) -> str:
        """Return the key of ``args``' ``key_fields`` for ``tool_name`` and ``tenant_id``."""
        if isinstance(key_fields, str):
            key_fields = (key_fields,)
        if not key_fields:
            raise ValidationError(
                [FieldError("", "idempotency key_fields is empty: list the fields to key on")],
                tool=tool_name,
            )
        missing = [f for f in dict.fromkeys(key_fields) if f not in args]
        if missing:
            raise ValidationError(
                [FieldError(_pointer(f), "required by the idempotency key") for f in missing],
                tool=tool_name,
            )
        values = {field: args[field] for field in key_fields}
        return _key(tool_name, tenant_id, "fields", _sha256(canonical_json(values)))


@attrs.frozen
class HashIdempotencyKeyGenerator:
    """Key from a canonical hash of all arguments (the default without ``key_fields``).

    ``digest = fingerprint(args) = sha256(canonical_json(args))``; ``key_fields`` is ignored.

    Example::

        gen = HashIdempotencyKeyGenerator()
        gen.generate("lookup", {"b": 1, "a": 2}) == gen.generate("lookup", {"a": 2, "b": 1})
    """

    def generate(
        self,
        tool_name: str,
        args: Mapping[str, object],
        *,
        key_fields: Sequence[str] = (),
        tenant_id: str | None = None,
        ctx: Any = None,
    ) -> str:
        """Return the key of all ``args`` for ``tool_name`` and ``tenant_id``."""
        return self.key_for_fingerprint(tool_name, fingerprint(args), tenant_id=tenant_id)

    def key_for_fingerprint(
        self, tool_name: str, args_fingerprint: str, *, tenant_id: str | None = None
    ) -> str:
        """The key of arguments whose :func:`fingerprint` is already known.

        The key's digest *is* the arguments' fingerprint, so a caller that needs both
        (the idempotency cache does) hashes the arguments once.
        """
        return _prefix(tool_name, tenant_id, "args") + args_fingerprint


def generator_takes_ctx(generator: IIdempotencyKeyGenerator) -> bool:
    """Whether ``generator.generate`` accepts the ``ctx`` keyword (or ``**kwargs``)."""
    try:
        params = inspect.signature(generator.generate).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "ctx" or p.kind is p.VAR_KEYWORD for p in params)


def default_key_generator(key_fields: Sequence[str]) -> IIdempotencyKeyGenerator:
    """The generator a spec uses when none is set: field-based if ``key_fields`` else hash.

    Example::

        default_key_generator(["order_id"])  # FieldBasedIdempotencyKeyGenerator()
        default_key_generator([])            # HashIdempotencyKeyGenerator()
    """
    if key_fields:
        return FieldBasedIdempotencyKeyGenerator()
    return HashIdempotencyKeyGenerator()
