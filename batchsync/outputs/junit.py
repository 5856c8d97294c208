"""JUnit XML for CI (``--junit``): one test suite per account, one case per integration,
written atomically so that a CI job reading at any moment sees the previous file or this one;
a merged run adds a failing case per shard whose work is not all there.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from array import array
from collections.abc import Iterable, Iterator, Sequence

from batchsync.files import atomic_write
from batchsync.outcome import Outcome, Summary, shop
from batchsync.outputs.sink import End, Lost, Part, Start
from batchsync.outputs.spool import Spool, spool_beside
from batchsync.text import escape_controls


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
        suite = _suite(suite_name, account, len(cases), failures, skipped, sum(o.duration_ms for o in cases), stamp)
        root.append(suite)
        suite.append(_suite_properties(summary, account))
        suite.extend(_case(o, suite_name) for o in cases)
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["skipped"] += skipped
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    return root


def _suite(suite_name: str, account: str, tests: int, failures: int, skipped: int, ms: float, stamp: str) -> ET.Element:
    """An account's ``<testsuite>`` element, without its children."""
    return ET.Element(
        "testsuite",
        name=f"{suite_name}.{account}",
        tests=str(tests),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=_seconds(ms / 1000.0),
        timestamp=stamp,
    )


def _suite_properties(summary: Summary, account: str) -> ET.Element:
    stats = summary.accounts.get(account)
    props = ET.Element("properties")
    ET.SubElement(props, "property", name="throttled", value=str(stats.throttled if stats else 0))
    if summary.stopped:
        ET.SubElement(props, "property", name="stopped", value=summary.stopped)
    return props


def _case(o: Outcome, suite_name: str) -> ET.Element:
    """One integration's ``<testcase>``."""
    case = ET.Element(
        "testcase",
        name=shop(o.integration_id, o.name),
        classname=f"{suite_name}.{o.account}",
        time=_seconds(o.duration_ms / 1000.0),
    )
    if o.shop_health is not None:
        _health_properties(case, o)
    if o.result == "failed":
        message, kind, body = _failure_message(o)
        ET.SubElement(case, "failure", message=message, type=kind).text = body
    elif o.result == "skipped":
        ET.SubElement(case, "skipped", message=o.reason or "skipped")
    else:
        ET.SubElement(case, "system-out").text = _change_text(o)
    return case


def _health_properties(case: ET.Element, o: Outcome) -> None:
    """``--with-health``: the shop's exception logs as properties of its test case (never a
    failure: its statuses are what the case tests): ``exception_logs`` (the count, or
    ``unknown``) and ``health`` (the words)."""
    health = o.shop_health
    assert health is not None
    props = ET.SubElement(case, "properties")
    count = "unknown" if health.unknown is not None else str(health.count)
    ET.SubElement(props, "property", name="exception_logs", value=count)
    ET.SubElement(props, "property", name="health", value=health.describe())


def junit_bytes(root: ET.Element) -> bytes:
    """The tree as an XML file. Every attribute and text is passed through the rule of
    batchsync.text first (tab and line feed kept in texts): XML 1.0 cannot hold most
    control characters at all, and a name or a detail from a merged report may have any."""
    _escape(root)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _escape(root: ET.Element) -> None:
    for element in root.iter():
        for key, value in element.attrib.items():
            element.set(key, escape_controls(value))
        if element.text:
            element.text = escape_controls(element.text, lines=True)
        if element.tail:
            element.tail = escape_controls(element.tail, lines=True)


def _fragment(element: ET.Element, level: int) -> bytes:
    """``element`` as :func:`junit_bytes` writes it inside a whole tree, at depth ``level``:
    escaped, indented, without what follows it (its tail: the next sibling's indent)."""
    _escape(element)
    ET.indent(element, level=level)
    element.tail = None
    data: bytes = ET.tostring(element, encoding="utf-8")
    return data


def _start_tag(element: ET.Element) -> bytes:
    """The start tag of ``element`` (given without children) as a whole tree writes it."""
    empty = _fragment(element, 0)  # <tag a="…" />
    assert empty.endswith(b" />")
    return empty[: -len(b" />")] + b">"


def write_junit(path: str, outcomes: Iterable[Outcome], summary: Summary, suite_name: str = "batchsync") -> None:
    """Write the JUnit XML report of a run to ``path`` atomically."""
    atomic_write(path, junit_bytes(junit_document(outcomes, summary, suite_name)))


def add_gaps(root: ET.Element, parts: Sequence[Part]) -> None:
    """A failing case per part whose work is not all there (``report merge``), so a CI view
    cannot show green for a night with a shard missing."""
    gaps = [p for p in parts if p.gap]
    if not gaps:
        return
    suite = ET.SubElement(
        root, "testsuite", name="batchsync.shards", tests=str(len(gaps)), failures=str(len(gaps)), errors="0"
    )
    for p in gaps:
        name = f"shard {p.shard}" if p.shard is not None else f"report {p.path}"
        case = ET.SubElement(suite, "testcase", name=name, classname="batchsync.shards", time="0.000")
        ET.SubElement(case, "failure", message=p.describe(), type=p.state).text = p.describe()
    for key in ("tests", "failures"):
        root.set(key, str(int(root.get(key, "0")) + len(gaps)))


class JUnit:
    """The sink of ``--junit``: each outcome's test case rendered as it comes and spooled to
    an unnamed temp file beside the target (:mod:`~batchsync.outputs.spool`); at the end
    the file is put together, suites by account and cases by integration id as
    :func:`junit_document` orders them, and renamed into place. Memory keeps per account
    its counts and each case's duration (the suite's time is their sum in the file's
    order), not the outcomes."""

    SUITE = "batchsync"

    FLAG = "--junit"  # how the run names it lost (a second signal cutting its close: close_all)

    def __init__(self, path: str, start: Start, lost: Lost) -> None:
        self.path, self.parts, self.lost = path, start.parts or (), lost
        self.failures: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.durations: dict[str, array[float]] = {}
        self.spool: Spool | None = None
        try:
            self.spool = spool_beside(path)
        except OSError as exc:
            self.lost.record("--junit", self.path, exc)

    def add(self, outcome: Outcome) -> None:
        spool = self.spool
        if spool is None:
            return
        account = outcome.account
        try:
            spool.add(account, outcome.integration_id, _fragment(_case(outcome, self.SUITE), 2))
        except OSError as exc:  # the temp file: a full disk; the file is lost, the run goes on
            self._drop(exc)
            return
        durations = self.durations.get(account)
        if durations is None:
            durations = self.durations[account] = array("d")
            self.failures[account] = self.skipped[account] = 0
        durations.append(outcome.duration_ms)
        if outcome.result == "failed":
            self.failures[account] += 1
        elif outcome.result == "skipped":
            self.skipped[account] += 1

    def _drop(self, exc: OSError) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        self.lost.record("--junit", self.path, exc)

    def flush(self) -> None:
        pass

    def close(self, end: End | None) -> None:
        spool, self.spool = self.spool, None
        if spool is None:
            return
        try:
            if end is not None:
                atomic_write(self.path, self._document(spool, end.summary))
        except OSError as exc:
            self.lost.record("--junit", self.path, exc)
        finally:
            spool.close()

    def _document(self, spool: Spool, summary: Summary) -> Iterator[bytes]:
        """The file, part by part: what :func:`junit_bytes` makes of :func:`junit_document`
        and :func:`add_gaps` for the same outcomes."""
        name = self.SUITE
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        gaps = [p for p in self.parts if p.gap]
        root = ET.Element("testsuites", name=name, time=_seconds(summary.duration_s))
        root.set("tests", str(len(spool) + len(gaps)))
        root.set("failures", str(sum(self.failures.values()) + len(gaps)))
        root.set("skipped", str(sum(self.skipped.values())))
        root.set("errors", "0")
        yield b"<?xml version='1.0' encoding='utf-8'?>\n"
        accounts = spool.groups()
        if not accounts and not gaps:
            yield _fragment(root, 0) + b"\n"
            return
        yield _start_tag(root)
        for account in accounts:
            order = spool.order(account)
            durations = self.durations[account]
            ms = sum(durations[i] for i in order)
            suite = _suite(name, account, len(order), self.failures[account], self.skipped[account], ms, stamp)
            yield b"\n  " + _start_tag(suite) + b"\n    " + _fragment(_suite_properties(summary, account), 2)
            for case in spool.parts(account, order):
                yield b"\n    "
                yield case
            yield b"\n  </testsuite>"
        if gaps:
            holder = ET.Element("testsuites")
            add_gaps(holder, gaps)
            yield b"\n  " + _fragment(holder[0], 1)
        yield b"\n</testsuites>\n"
