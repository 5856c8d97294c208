"""``batchsync import`` writes its inventory: the document as TOML, YAML or JSON text,
deterministically and escaped so that any shop's name or status loads back exactly, and
the file written atomically after loading it back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from batchsync.inventory.grouping import Document, Format, encodable


def comment_text(text: str, limit: int = 300) -> str:
    """``text`` safe inside a ``#`` comment: nothing that ends the line or moves a terminal."""
    out = []
    for ch in text[:limit]:
        if ch == " " or (ch.isprintable() and ch != "\ufeff"):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii") if encodable(ch) else "\\ufffd")
    return "".join(out)


def render(doc: Document, fmt: Format) -> str:
    """The document as text; deterministic, and what ``inventory.load`` reads back."""
    if fmt == "toml":
        return _render_toml(doc)
    if fmt == "yaml":
        return _render_yaml(doc)
    return _render_json(doc)


def _render_json(doc: Document) -> str:
    out: dict[str, Any] = dict(doc.top)
    if doc.status_sets:
        out["status_sets"] = {k: e.data for k, e in doc.status_sets.items()}
    integrations = []
    for e in doc.integrations:
        # The loader ignores "comment": JSON has no comments.
        integrations.append({"comment": " / ".join(e.comments), **e.data} if e.comments else e.data)
    out["integrations"] = integrations
    return msgspec.json.format(msgspec.json.encode(out), indent=2).decode("utf-8") + "\n"


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _TOML_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(k: Any) -> str:
    text = str(k)
    return text if _BARE.fullmatch(text) else _toml_str(text)


def _toml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if v is None:
        return '""'  # only reached inside a mapping, where "" means not mapped
    return _toml_str(str(v))


def _toml_inline(v: Any, mapping: bool = False) -> str:
    if isinstance(v, dict):
        # TOML has no null: a key left out means the same, except in a mapping, where
        # null is "not mapped", which "" says too.
        items = [f"{_toml_key(k)} = {_toml_inline(x)}" for k, x in v.items() if mapping or x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_inline(x) for x in v if x is not None) + "]"
    return _toml_scalar(v)


def _toml_body(d: Mapping[str, Any], lines: list[str]) -> None:
    for k, v in d.items():
        if v is None and k != "mapping":
            continue  # TOML has no null: a key left out is the same as null
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            lines.append(f"{_toml_key(k)} = [")
            lines.extend(f"  {_toml_inline(x)}," for x in v)
            lines.append("]")
        else:
            lines.append(f"{_toml_key(k)} = {_toml_inline(v, mapping=k == 'mapping')}")


def _toml_table(path: str, d: Mapping[str, Any], lines: list[str]) -> None:
    """``[path]`` with its plain keys, then its sub-tables as ``[path.key]``."""
    plain = {k: v for k, v in d.items() if not (isinstance(v, dict) and _tableish(v))}
    lines.append(f"[{path}]")
    _toml_body(plain, lines)
    for k, v in d.items():
        if k not in plain:
            lines.append("")
            _toml_table(f"{path}.{_toml_key(k)}", v, lines)


def _tableish(v: dict[str, Any]) -> bool:
    # A table of tables (accounts, each account) reads better as sections; a flat one inline.
    return any(isinstance(x, dict) for x in v.values())


def _comments(comments: Iterable[str], lines: list[str], pad: str = "") -> None:
    lines.extend(f"{pad}# {comment_text(c)}" for c in comments)


def _render_toml(doc: Document) -> str:
    lines: list[str] = []
    _comments(doc.header, lines)
    if lines:
        lines.append("")
    scalars = {k: v for k, v in doc.top.items() if not isinstance(v, dict)}
    _toml_body(scalars, lines)
    if not doc.integrations:
        lines.append("integrations = []")
    for k, v in doc.top.items():
        if isinstance(v, dict):
            if lines and lines[-1]:
                lines.append("")
            if k == "accounts" and v:
                for name, acc in v.items():
                    _toml_table(f"accounts.{_toml_key(name)}", acc if isinstance(acc, dict) else {}, lines)
                    lines.append("")
            else:
                _toml_table(_toml_key(k), v, lines)
    for name, e in doc.status_sets.items():
        if lines and lines[-1]:
            lines.append("")
        _comments(e.comments, lines)
        lines.append(f"[status_sets.{_toml_key(name)}]")
        _toml_body(e.data, lines)
    for e in doc.integrations:
        if lines and lines[-1]:
            lines.append("")
        _comments(e.comments, lines)
        lines.append("[[integrations]]")
        _toml_body(e.data, lines)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


_YAML_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


_YAML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\0"}


def _yaml_printable(o: int) -> bool:
    # YAML 1.1's printable set, less the characters it reads as line breaks (U+0085,
    # U+2028, U+2029) and the byte-order mark.
    return (
        0x20 <= o <= 0x7E
        or (0xA0 <= o <= 0xD7FF and o not in (0x2028, 0x2029))
        or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)
        or o >= 0x10000
    )


def _yaml_quoted(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _YAML_ESCAPES.get(ch)
        o = ord(ch)
        if esc is not None:
            out.append(esc)
        elif _yaml_printable(o):
            out.append(ch)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}")
    out.append('"')
    return "".join(out)


def _yaml_str(s: str) -> str:
    return s if _YAML_PLAIN.fullmatch(s) and s.lower() not in _YAML_WORDS else _yaml_quoted(s)


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return ".nan"
        if v in (float("inf"), float("-inf")):
            return ".inf" if v > 0 else "-.inf"
        text = repr(v)
        # YAML 1.1 reads 1e+20 as text: a float needs its dot.
        if "e" in text and "." not in text:
            text = text.replace("e", ".0e")
        return text
    return _yaml_str(str(v))


def _yaml_flow(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_yaml_str(str(k))}: {_yaml_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_flow(x) for x in v) + "]"
    return _yaml_scalar(v)


def _yaml_block(d: Mapping[str, Any], indent: int, depth: int, lines: list[str]) -> None:
    pad = " " * indent
    for k, v in d.items():
        key = _yaml_str(str(k))
        if isinstance(v, dict) and v and depth < 2:
            lines.append(f"{pad}{key}:")
            _yaml_block(v, indent + 2, depth + 1, lines)
        elif isinstance(v, (list, tuple)) and any(isinstance(x, (dict, list, tuple)) for x in v):
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}  - {_yaml_flow(x)}" for x in v)
        else:
            lines.append(f"{pad}{key}: {_yaml_flow(v)}")


def _render_yaml(doc: Document) -> str:
    lines: list[str] = []
    _comments(doc.header, lines)
    if lines:
        lines.append("")
    _yaml_block(doc.top, 0, 0, lines)
    if doc.status_sets:
        lines.append("status_sets:")
        for name, e in doc.status_sets.items():
            _comments(e.comments, lines, "  ")
            lines.append(f"  {_yaml_str(name)}:")
            if e.data:
                _yaml_block(e.data, 4, 2, lines)
            else:
                lines[-1] += " {}"
    if not doc.integrations:
        lines.append("integrations: []")
    else:
        lines.append("integrations:")
    for e in doc.integrations:
        _comments(e.comments, lines, "  ")
        body: list[str] = []
        _yaml_block(e.data, 4, 2, body)
        if not body:
            lines.append("  - {}")
            continue
        lines.append("  - " + body[0][4:])
        lines.extend(body[1:])
    return "\n".join(lines) + "\n"


def write_checked(path: str, text: str, environ: dict[str, str] | None = None) -> list[str]:
    """Write ``text`` to ``path`` atomically (a reader sees the old file or the whole new
    one), after loading it back from a temporary file beside it; the problems that load
    found, which are printed (the file is written all the same: the reads are not lost)."""
    import os
    import tempfile

    from batchsync.inventory.loader import load

    target = Path(path)
    data = text.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        inv = load(tmp, environ=environ, isolate_credentials=True, token_url_derived=True)
        problems = [f"{target}: {p.path}: {p.message}" for p in inv.problems]
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dirfd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return problems
    try:
        os.fsync(dirfd)
    except OSError:
        pass
    finally:
        os.close(dirfd)
    return problems
