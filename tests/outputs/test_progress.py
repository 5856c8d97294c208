"""The progress line, log formatting and redaction."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest

from batchsync.outcome import Outcome
from batchsync.outputs.logs import JsonLogFormatter, TextLogFormatter, flush_logs, redact, setup_logging
from batchsync.outputs.progress import Progress, format_duration
from batchsync.redact import Redactor


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ok(i: int) -> Outcome:
    return Outcome(i, "acme", "unchanged")


def test_progress_line_has_counts_rate_eta_failures_and_throttled() -> None:
    out, clock = io.StringIO(), FakeClock()
    throttled = ["beta", "acme"]
    p = Progress(100, stream=out, enabled=True, throttled=lambda: throttled, clock=clock)
    for i in range(24):
        clock.now += 0.5
        p.update(ok(i))
    clock.now += 0.5
    p.update(Outcome(99, "acme", "failed"))
    # 25 done in 12.5 s: 2.0/s, 75 to go: 37.5 s.
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("[=====>              ] 25/100   25%  2.0/s  ETA 38s  failed 1  throttled: acme, beta")
    assert last.endswith("\x1b[K")
    throttled.clear()
    clock.now += 1
    p.update(ok(100))
    assert "throttled" not in out.getvalue().split("\r")[-1]


def test_progress_redraws_at_most_five_times_a_second() -> None:
    out, clock = io.StringIO(), FakeClock()
    p = Progress(5000, stream=out, enabled=True, clock=clock)
    for i in range(1000):
        clock.now += 0.001  # 1000 outcomes in one second
        p.update(ok(i))
    draws = out.getvalue().count("\r")
    assert 4 <= draws <= 6


def test_progress_disabled_writes_nothing() -> None:
    out = io.StringIO()  # not a terminal: disabled by default
    p = Progress(10, stream=out, throttled=lambda: ["acme"])
    assert not p.enabled
    for i in range(10):
        p.update(ok(i))
    p.refresh()
    p.clear()
    p.close(keep=True)
    assert out.getvalue() == ""


def test_progress_close_clears_or_keeps_the_line() -> None:
    out, clock = io.StringIO(), FakeClock()
    p = Progress(2, stream=out, enabled=True, clock=clock)
    p.update(ok(1))
    p.close()
    assert out.getvalue().endswith("\r\x1b[K")
    p.update(ok(2))  # after close: nothing
    assert out.getvalue().endswith("\r\x1b[K")

    out = io.StringIO()
    p = Progress(2, stream=out, enabled=True, clock=clock)
    p.update(ok(1))
    clock.now += 1.0
    p.update(ok(2))
    p.close(keep=True)
    text = out.getvalue()
    assert text.startswith("\r[==========>         ] 1/2   50%  -/s  ETA ?\x1b[K")  # no rate yet
    assert text.endswith("\r[====================] 2/2  100%  2.0/s\x1b[K\n")  # done: no ETA


def test_printing_between_outcomes_does_not_make_every_outcome_redraw() -> None:
    """Each outcome's lines used to erase the line and make the next update redraw at once:
    a redraw per outcome. Now what is printed waits for the next redraw, which comes at
    most five times a second, and goes out just before it, the line staying at the bottom."""
    out, clock = io.StringIO(), FakeClock()
    printed: list[str] = []
    p = Progress(10_000, stream=out, enabled=True, clock=clock)

    def before_draw() -> None:
        p.clear()
        out.write("".join(printed))
        printed.clear()

    p.before_draw = before_draw
    for i in range(5000):
        clock.now += 0.0002  # 5000 outcomes in one second, each printing a line
        printed.append(f"~ integration {i} changed\n")
        p.update(ok(i))
    text = out.getvalue()
    assert 4 <= text.count("\x1b[K") // 2 <= 6  # an erase and a draw per redraw
    assert text.count("~ integration") == 5000 - len(printed)  # all but what waits for the next redraw
    assert text.rstrip("\x1b[K").split("\r")[-1].startswith("[")  # the progress line is last


def test_progress_line_fits_the_width() -> None:
    p = Progress(10, stream=io.StringIO(), enabled=True, throttled=lambda: [f"account-{i}" for i in range(50)])
    p.update(ok(1))
    line = p.line(width=60)
    assert len(line) == 60 and line.endswith("...")


def test_progress_update_is_cheap() -> None:
    p = Progress(100_000, stream=io.StringIO(), enabled=True)
    outcome = ok(1)
    start = time.perf_counter()
    for _ in range(100_000):
        p.update(outcome)
    assert time.perf_counter() - start < 1.0
    assert p.done == 100_000 and p.counts["unchanged"] == 100_000


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59.4, 92, 3599, 7500)] == ["0s", "59s", "1m32s", "59m59s", "2h05m"]


# -- redaction ----------------------------------------------------------------------------


def test_redact_values_and_basic_headers() -> None:
    header = "Basic " + base64.b64encode(b"pubkey123:s3cr3t-value").decode()
    text = f"key s3cr3t-value in {header!r} and again s3cr3t-value."
    assert redact(text, ["s3cr3t-value"]) == "key *** in 'Basic ***' and again ***."
    assert redact("nothing here", ["s3cr3t-value"]) == "nothing here"
    assert redact("empty secrets are ignored", [""]) == "empty secrets are ignored"
    assert redact("Basic auth failed", []) == "Basic auth failed"


def test_redact_any_basic_credential_and_longest_secret_first() -> None:
    header = "authorization: basic " + base64.b64encode(b"someone:else").decode()
    assert redact(header, []) == "authorization: basic ***"
    assert redact("abcdef", ["abc", "abcdef"]) == "***"


def test_redactor_learns_secrets_later() -> None:
    r = Redactor()
    assert r("tok-1") == "tok-1"
    r.add(["tok-1"])
    assert r("tok-1") == "***"


# -- logging ------------------------------------------------------------------------------


@pytest.fixture
def batchsync_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("batchsync")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_json_log_lines_parse_with_fields_and_redaction(batchsync_logger: logging.Logger) -> None:
    out = io.StringIO()
    formatter = setup_logging("info", "json", secrets=['pa"ss'], stream=out)
    log = logging.getLogger("batchsync.engine")
    log.info("hello %s", "world", extra={"fields": {"account": "acme", "integration_id": 7, "level": "x"}})
    log.debug("not shown")
    formatter.add_secrets(["later-secret"])
    log.warning('leaked pa"ss and later-secret', extra={"fields": {"token": 'pa"ss'}})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    docs = [json.loads(line) for line in lines]
    assert len(docs) == 3
    first = docs[0]
    assert first["message"] == "hello world"
    assert first["level"] == "INFO"  # a field cannot overwrite the record's own keys
    assert first["logger"] == "batchsync.engine"
    assert first["account"] == "acme" and first["integration_id"] == 7
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert docs[1]["message"] == "leaked *** and ***"
    assert docs[1]["token"] == "***"
    assert "pa" not in lines[1].replace("***", "")
    assert "ValueError: boom" in docs[2]["exc"]


def test_text_log_format_and_setup_replaces_its_handler(batchsync_logger: logging.Logger) -> None:
    first, out = io.StringIO(), io.StringIO()
    setup_logging("warning", "text", stream=first)
    formatter = setup_logging("WARNING", "text", secrets=["hunter2"], stream=out)
    assert isinstance(formatter, TextLogFormatter)
    logging.getLogger("batchsync.run").warning("password hunter2", extra={"fields": {"account": "acme"}})
    logging.getLogger("batchsync.run").info("quiet")
    assert first.getvalue() == ""
    line = out.getvalue()
    assert line.endswith(" WARNING batchsync.run: password *** account=acme\n")
    assert line.count("\n") == 1


def test_buffered_log_lines_wait_for_a_flush_a_warning_goes_at_once_after_the_progress_line(
    batchsync_logger: logging.Logger,
) -> None:
    out, clock = io.StringIO(), FakeClock()
    setup_logging("debug", "text", secrets=["hunter2"], stream=out, buffered=True)
    progress = Progress(2, out, enabled=True, clock=clock)
    flush_logs(progress.clear, hook=True)
    log = logging.getLogger("batchsync.client")
    progress.refresh()
    drawn = out.getvalue()
    assert drawn.startswith("\r[") and drawn.endswith("\x1b[K")
    log.debug("GET one hunter2")
    log.debug("GET two")
    assert out.getvalue() == drawn  # held: no write per line
    log.warning("slowing")  # a warning goes at once, with the lines before it, in order
    written = out.getvalue()[len(drawn) :]
    assert written.startswith("\r\x1b[K")  # the progress line erased first: no log line starts on its row
    lines = written[len("\r\x1b[K") :].splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "DEBUG batchsync.client: GET one ***",
        "DEBUG batchsync.client: GET two",
        "WARNING batchsync.client: slowing",
    ]
    log.debug("GET three")
    before = out.getvalue()
    flush_logs()  # the run's timer, its end, or main() returning
    assert out.getvalue()[len(before) :].endswith("batchsync.client: GET three\n")
    flush_logs()  # nothing waits: nothing written
    assert out.getvalue().endswith("GET three\n")


def test_buffered_log_lines_go_out_past_the_limit_without_a_flush(batchsync_logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging("debug", "json", stream=out, buffered=True)
    log = logging.getLogger("batchsync.client")
    n = 0
    while not out.getvalue():
        log.debug("x" * 100)
        n += 1
        assert n < 2000, "never written"
    lines = out.getvalue().splitlines()
    assert len(lines) == n  # all of them, in one write
    assert all(json.loads(line)["message"] == "x" * 100 for line in lines)
    size = len(lines[0]) + 1  # every line the same length, with its newline
    assert n * size > 1 << 16 >= (n - 1) * size  # written by the first line past 64 KiB


def test_setup_logging_rejects_unknown_values(batchsync_logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match="log level"):
        setup_logging("loud", "text")
    with pytest.raises(ValueError, match="log format"):
        setup_logging("info", "xml")


def test_json_formatter_standalone_handles_unserializable_fields() -> None:
    record = logging.LogRecord("batchsync", logging.ERROR, __file__, 1, "m", None, None)
    record.fields = {"path": PurePosixPath("/etc/x.key"), "n": 1}
    doc = json.loads(JsonLogFormatter().format(record))
    assert doc == {
        "ts": doc["ts"],
        "level": "ERROR",
        "logger": "batchsync",
        "message": "m",
        "path": "/etc/x.key",
        "n": 1,
    }
