"""Strict JSON for files that come from outside the process: workspace side files, tuning logs.

Python's ``json`` module accepts ``NaN``, ``Infinity`` and numbers such as ``1e999`` (read as
infinity), none of which is JSON, and recurses once per nesting level. ``loads_strict`` refuses
all of these and anything over a size limit, each with one line saying what was wrong;
``canonical_sha256`` is the checksum of a document written in one canonical form.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any


class StrictJSONError(ValueError):
    """Text that is not strict JSON, or larger than allowed; the message says which."""


def _no_constant(name: str) -> None:
    raise StrictJSONError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"the number {text[:40]} is out of range")
    return value


def loads_strict(data: str | bytes, max_bytes: int) -> Any:
    """Parse ``data`` (UTF-8 when bytes), refusing more than ``max_bytes``, NaN, Infinity, numbers
    out of float range and nesting too deep to parse; raises StrictJSONError."""
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > max_bytes:
        raise StrictJSONError(f"{size:,} bytes is over the limit of {max_bytes:,} bytes")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except StrictJSONError:
        raise
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise StrictJSONError(
            f"malformed or truncated JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise StrictJSONError("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise StrictJSONError(f"malformed JSON ({str(exc).splitlines()[0][:120]})") from None


def canonical_sha256(document: Mapping[str, Any]) -> str:
    """SHA-256 of ``document`` written canonically (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(document, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
