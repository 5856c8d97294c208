"""Run results for machines that watch: JUnit XML for CI and Prometheus textfile metrics.

Both files are written atomically (temp file in the same directory, fsync, rename), so a
CI job or node_exporter reading at any moment sees the previous run's file or this one's.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path

from batchsync.outcome import RESULTS, Outcome, Summary

__all__ = ["atomic_write", "read_metric", "write_junit", "write_metrics"]


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step.

    The temp file ends in ``.tmp``, never ``.prom``, so node_exporter's textfile collector
    (which reads ``*.prom``) never picks up a half-written file.
    """
    target = Path(path)
    directory = target.parent
    try:
        mode = os.stat(target).st_mode & 0o777
    except FileNotFoundError:
        # mkstemp creates 0600; node_exporter usually runs as another user and must read it.
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename is durable only once the directory is on disk; best effort (not every
    # filesystem lets a directory be opened and fsynced).
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# -- JUnit -------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}"


def _failure_message(outcome: Outcome) -> tuple[str, str, str]:
    """(message, type, body) of a failed integration."""
    e = outcome.error
    if e is None:
        return "failed", "failed", "failed (no error recorded)"
    status = f" {e.http_status}" if e.http_status else ""
    message = f"{e.kind}{status}: {e.detail}" if e.detail else f"{e.kind}{status}"
    lines = [message]
    if e.code:
        lines.append(f"code: {e.code}")
    if e.pointer:
        lines.append(f"pointer: {e.pointer}")
    lines.append(f"attempts: {outcome.attempts}")
    lines.extend(f"{c.op} {c.external_id!r}" for c in outcome.changes)
    return message, e.kind, "\n".join(lines)


def _change_text(outcome: Outcome) -> str:
    head = f"{outcome.result} (+{outcome.added} ~{outcome.changed} -{outcome.removed})"
    return "\n".join([head, *(f"  {c.op} {c.external_id!r}" for c in outcome.changes)])


def junit_document(outcomes: Iterable[Outcome], summary: Summary, suite_name: str = "batchsync") -> ET.Element:
    """The ``<testsuites>`` tree; :func:`write_junit` serializes it.

    One ``<testsuite>`` per account and ``classname="<suite_name>.<account>"``: Jenkins
    groups by classname (package ``batchsync``, class = account), GitLab lists the
    classname beside each case, and per-account counts show in tools that show suites.
    """
    by_account: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_account.setdefault(o.account, []).append(o)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    root = ET.Element("testsuites", name=suite_name, time=_seconds(summary.duration_s))
    totals = dict.fromkeys(("tests", "failures", "skipped"), 0)
    for account in sorted(by_account):
        cases = sorted(by_account[account], key=lambda o: o.integration_id)
        failures = sum(1 for o in cases if o.result == "failed")
        skipped = sum(1 for o in cases if o.result == "skipped")
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"{suite_name}.{account}",
            tests=str(len(cases)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
            time=_seconds(sum(o.duration_ms for o in cases) / 1000.0),
            timestamp=stamp,
        )
        stats = summary.accounts.get(account)
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="throttled", value=str(stats.throttled if stats else 0))
        if summary.stopped:
            ET.SubElement(props, "property", name="stopped", value=summary.stopped)
        for o in cases:
            case = ET.SubElement(
                suite,
                "testcase",
                name=f"integration {o.integration_id}",
                classname=f"{suite_name}.{account}",
                time=_seconds(o.duration_ms / 1000.0),
            )
            if o.result == "failed":
                message, kind, body = _failure_message(o)
                ET.SubElement(case, "failure", message=message, type=kind).text = body
            elif o.result == "skipped":
                ET.SubElement(case, "skipped", message=o.reason or "skipped")
            else:
                ET.SubElement(case, "system-out").text = _change_text(o)
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["skipped"] += skipped
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    return root


def write_junit(path: str, outcomes: Iterable[Outcome], summary: Summary, suite_name: str = "batchsync") -> None:
    """Write the JUnit XML report of a run to ``path`` atomically."""
    root = junit_document(outcomes, summary, suite_name)
    ET.indent(root)
    atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


# -- Prometheus textfile -----------------------------------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")


def _parse_labels(text: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if m is None:
            return None
        out[m.group(1)] = _UNESCAPE.sub(lambda u: "\n" if u.group(1) == "n" else u.group(1), m.group(2))
        pos = m.end()
    return out


def read_metric(path: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of sample ``name`` whose labels include ``labels`` in a textfile, or None
    (no file, unreadable, no such sample, garbage)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    want = dict(labels or {})
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = _SAMPLE.match(line)
        if m is None or m.group(1) != name:
            continue
        got = _parse_labels(m.group(2) or "")
        if got is None or any(got.get(k) != v for k, v in want.items()):
            continue
        try:
            return float(m.group(3))
        except ValueError:
            return None
    return None


class _Exposition:
    def __init__(self, const: Mapping[str, str]) -> None:
        self.const = dict(const)
        self.lines: list[str] = []

    def family(self, name: str, help_text: str, kind: str = "gauge") -> None:
        help_escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines.append(f"# HELP {name} {help_escaped}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        self.lines.append(f"{name}{_labels({**self.const, **labels})} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def metrics_text(
    summary: Summary,
    mode: str,
    finished_at: float,
    last_success: float,
    labels: Mapping[str, str] | None = None,
) -> str:
    """The exposition text; :func:`write_metrics` decides ``last_success`` and writes it."""
    success = is_success(summary)
    m = _Exposition({**(labels or {}), "mode": mode})
    m.family("batchsync_integrations", "Integrations per account and result in the last run.")
    for account in sorted(summary.accounts):
        stats = summary.accounts[account]
        for result in RESULTS:
            m.sample("batchsync_integrations", getattr(stats, result), account=account, result=result)
    m.family("batchsync_integrations_total", "Integrations per result in the last run, over all accounts.")
    for result in RESULTS:
        m.sample("batchsync_integrations_total", summary.total(result), result=result)
    m.family("batchsync_throttled_total", "Responses 429 (Too Many Requests) per account in the last run.")
    for account in sorted(summary.accounts):
        m.sample("batchsync_throttled_total", summary.accounts[account].throttled, account=account)
    m.family("batchsync_run_duration_seconds", "Wall-clock duration of the last run.")
    m.sample("batchsync_run_duration_seconds", round(summary.duration_s, 3))
    m.family("batchsync_run_finished_timestamp_seconds", "Unix time the last run finished.")
    m.sample("batchsync_run_finished_timestamp_seconds", round(finished_at, 3))
    m.family(
        "batchsync_last_success_timestamp_seconds",
        "Unix time of the last run with no failed and no skipped integration (0: none recorded).",
    )
    m.sample("batchsync_last_success_timestamp_seconds", round(last_success, 3))
    m.family("batchsync_run_success", "1 if the last run had no failed and no skipped integration, else 0.")
    m.sample("batchsync_run_success", 1 if success else 0)
    m.family("batchsync_run_interrupted", "1 if the last run stopped early (signal, failure limit), else 0.")
    m.sample("batchsync_run_interrupted", 1 if summary.stopped is not None else 0)
    return m.text()


def is_success(summary: Summary) -> bool:
    """No failed, no skipped, not stopped early: what ``last_success`` counts."""
    return summary.stopped is None and not summary.total("failed") and not summary.total("skipped")


def write_metrics(
    path: str,
    summary: Summary,
    mode: str,
    finished_at: float | None = None,
    last_success_from: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Write the run's metrics to ``path`` (Prometheus text format) atomically.

    For node_exporter's textfile collector ``path`` must end in ``.prom`` and sit in its
    ``--collector.textfile.directory``; that is not checked here. Every sample carries
    ``mode`` (plan/apply) plus the constant ``labels`` (e.g. ``{"inventory": "eu"}``): two
    files in the collector's directory that export the same series make node_exporter
    report an error, so plan and apply, or two inventories, must differ by a label.

    ``batchsync_last_success_timestamp_seconds`` is this run's ``finished_at`` when it
    succeeded; otherwise the value is carried over from the previous file
    (``last_success_from``, default ``path`` itself), so it survives failing runs. 0 when
    no run has succeeded yet, so ``time() - metric > 2 * 86400`` alerts from day one.
    """
    finished = time.time() if finished_at is None else finished_at
    if is_success(summary):
        last = finished
    else:
        match = {**(labels or {}), "mode": mode}
        previous = read_metric(last_success_from or path, "batchsync_last_success_timestamp_seconds", match)
        last = previous if previous is not None and math.isfinite(previous) else 0.0
    atomic_write(path, metrics_text(summary, mode, finished, last, labels).encode("utf-8"))
