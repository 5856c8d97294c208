"""The command line under hostile input: no secret in a usage error, no traceback for any URL.

A credential the inventory uses is put in every place a usage error could echo it from (an
environment variable, a file, the options checked once the inventory is loaded), and every
option that takes a URL gets values that urllib, yarl and aiohttp disagree on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inventory_factory import inventory_env, make_inventory

from batchsync import usage
from batchsync.cli import main
from batchsync.engine.lock import account_lock_name
from batchsync.inventory.loader import load
from batchsync.urls import insecure_http, is_loopback, url_problem

SECRET = "sk_live_Zq8mW3vT9pXc"


@pytest.fixture(autouse=True)
def _no_redactor_left() -> Iterator[None]:
    """main() registers the run's redactor for its messages: none outlives its test."""
    yield
    usage.redact_with(None)


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    accounts = {"acme": 2}
    for name, value in {**inventory_env(accounts, {"acme": SECRET}), "SEC": SECRET}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    return Path(make_inventory(tmp_path, accounts, secrets={"acme": SECRET}).path)


def _forms(secret: str) -> list[str]:
    return [secret, secret.upper(), base64.b64encode(secret.encode()).decode()]


# Each: the options that make a usage error (or a refusal) with the secret somewhere it is
# read from; {inv} is the inventory, {dir} its folder.
USAGE_ERRORS = [
    ["plan", "{inv}", "--shard-index-from-env", "SEC", "--shard-count", "2"],
    ["apply", "{inv}", "--shard-index-from-env", "SEC", "--shard-count", "2"],
    ["import", "{inv}", "-o", "{dir}/new.toml", "--shard-index-from-env", "SEC", "--shard-count", "2"],
    ["plan", "{inv}", "--notify", "env:SEC"],
    ["apply", "{inv}", "--notify", "file:secret.txt"],
    ["plan", "{inv}", "--base-url", f"http://acme:{SECRET}@127.0.0.1:9/"],
    ["import", "{inv}", "-o", "{dir}/new.toml", "--base-url", f"http://acme:{SECRET}@127.0.0.1:9/"],
    ["plan", "{inv}", "--limit", SECRET],
    ["apply", "{inv}", "--limit", f"tag:{SECRET}"],
    ["plan", "{inv}", "--report", f"{{dir}}/{SECRET}/r.jsonl"],
    ["apply", "{inv}", "--junit", f"{{dir}}/{SECRET}/j.xml"],
    ["plan", "{inv}", "--retry-failed", "secret.txt"],
    ["plan", "{inv}", "--retry-failed", f"{{dir}}/{SECRET}.jsonl"],
    ["import", "{inv}", "-o", "{dir}/new.toml", "--account", SECRET],
    ["import", "{inv}", "-o", f"{{dir}}/{SECRET}/new.toml"],
    # Values checked before the inventory is read, by the settings or by argparse itself:
    # redacted with the credentials of the inventory the command line names.
    ["plan", "{inv}", "--shard", SECRET],
    ["apply", "{inv}", "--max-failures", SECRET],
    ["plan", "{inv}", "--with-health", "--since", SECRET],
    ["health", "{inv}", "--since", SECRET],
    ["apply", "{inv}", "--plan", "{dir}/p.json", "--max-age", SECRET],
    ["plan", "{inv}", "--shard-count", SECRET],
    ["plan", "{inv}", "--base-url", SECRET],
    ["plan", "{inv}", "--base-url", f"http://127.0.0.1:9/?k={SECRET}"],
    ["plan", "{inv}", "--concurrency", SECRET],
    ["apply", "{inv}", "--timeout", SECRET],
    ["import", "{inv}", "-o", "{dir}/new.toml", "--max-list-items", SECRET],
    ["plan", "{inv}", "--format", SECRET],
    ["plan", "{inv}", "--recap-by", SECRET],
    ["apply", "{inv}", f"--{SECRET}"],
]


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=lambda a: " ".join(a[:1] + a[2:4]))
def test_no_usage_error_echoes_a_secret(
    inventory: Path, capsys: pytest.CaptureFixture[str], argv: list[str], log_format: str
) -> None:
    args = [a.format(inv=inventory, dir=inventory.parent) for a in argv]
    if "--shard-index-from-env" in args and args[0] == "import":
        args = args[: args.index("--shard-index-from-env")]  # import has no shards: its -o is the error
        args[args.index("-o") + 1] = str(inventory.parent / SECRET / "new.toml")
    code = main([*args, "--log-format", log_format])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.strip(), "a usage error says why"
    for form in _forms(SECRET):
        assert form not in out + err, (form, err)
    assert "Traceback" not in err


def test_a_usage_error_after_another_command_in_the_process_still_hides_the_secret(
    inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() called twice in one process (a test suite, a wrapper): the first command's run
    registered its redactor, which knows only its own inventory's credentials."""
    from batchsync import usage
    from batchsync.redact import Redactor

    usage.redact_with(Redactor(["another-inventorys-secret"]))  # what an earlier run left
    code = main(["apply", str(inventory), "--max-failures", SECRET])
    _, err = capsys.readouterr()
    assert code == 2 and "--max-failures" in err and SECRET not in err, err


# Values every URL parser takes differently; each must be a usage error (exit 2), nothing sent,
# nothing written. (A URL with a name that does not resolve is no usage error: that is a
# transport failure of each request, which these are not.)
BAD_URLS = [
    "http://[::1",
    "http://[::1]x/",
    "http://127.0.0.1:99999/x",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:abc/",
    "http://127.0.0.1:-1/",
    "http://u:p@127.0.0.1:9/",
    "http://@127.0.0.1:9/",
    "http://a..b/",
    "http://" + "a" * 64 + ".example/",
    "http://\u00ad/",
    "https://xn--/",  # punycode labels that do not decode: yarl's URL.host raises on them
    "https://xn--a/",
    "https://a.xn--/",
    "https://xn--e-/",
    "http://127.0.0.1:9/x?page=2",
    "http://127.0.0.1:9/x#frag",
    "http://127.0.0.1:9/\x1b[2J",
    "http:///x",
    "ftp://127.0.0.1/",
    "http://",
    "",
]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("command", ["plan", "apply", "import"])
def test_no_base_url_ends_in_a_traceback(
    inventory: Path, capsys: pytest.CaptureFixture[str], command: str, url: str
) -> None:
    folder = inventory.parent
    outputs = ["-o", str(folder / "new.toml")] if command == "import" else ["--report", str(folder / "r.jsonl")]
    code = main([command, str(inventory), *outputs, "--base-url", url, "--timeout", "1", "--max-attempts", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--base-url" in err and "Traceback" not in err and "internal error" not in err
    assert "\x1b" not in err
    assert not (folder / "new.toml").exists() and not (folder / "r.jsonl").exists()


def test_the_same_urls_in_an_inventory_are_problems_of_the_file(tmp_path: Path) -> None:
    for n, url in enumerate(u for u in BAD_URLS if u.startswith("http")):
        path = tmp_path / f"inv{n}.json"
        account = {"public_key": "env:P", "secret_key": "env:S", "base_url": url}
        integration = {"id": 1, "account": "a", "statuses": []}
        path.write_text(json.dumps({"accounts": {"a": account}, "integrations": [integration]}))
        inv = load(path, {"P": "p", "S": "s"})
        assert [p.path for p in inv.problems] == ["$.accounts.a.base_url"], (url, inv.problems)


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        lambda scheme, rest: scheme + rest,
        st.sampled_from(["http://", "https://", "HTTP://"]),
        st.lists(st.sampled_from([*"ab1.-_:@/[]%?#~!$&'()*+,;= \x00\x1b\u00ad\u00fc\u202e", "xn--"]), max_size=30).map(
            "".join
        ),
    )
)
def test_a_url_that_passes_the_check_is_one_aiohttp_can_send_to(url: str) -> None:
    from yarl import URL

    if url_problem(url) is not None:
        return
    for path in ("/shop-order-statuses", "/integrations", "/oauth2/token"):
        built = URL(url.rstrip("/") + path).with_query({"integration_id": "1"})
        host = built.raw_host
        assert host and built.host, url  # .host decodes punycode, as the client's origin check does
        if ":" not in host:
            host.encode("idna")  # what the resolver does with it
        assert built.port is not None and 0 < built.port < 65536
    assert built.user is None and built.password is None
    is_loopback(url)
    insecure_http(url)
    account_lock_name("pub", url)


# -- report merge and --retry-failed: reports anyone could have written ---------------------------


def _header(command: str = "apply", version: int = 2, selected: int = 2) -> str:
    doc = {"header": True, "version": version, "command": command, "started_at": 1.0, "inventory": "i.toml"}
    return json.dumps(doc | {"selected": selected, "shard": None})


def _outcome(iid: object, account: str = "acme", result: str = "unchanged") -> str:
    return json.dumps({"integration_id": iid, "account": account, "result": result, "attempts": 1})


def _summary(mode: str = "apply", **counts: int) -> str:
    stats = {"unchanged": 0, "changed": 0, "failed": 0, "skipped": 0} | counts
    doc = {"summary": True, "mode": mode, "accounts": {"acme": stats}, "duration_s": 1.0, "stopped": None}
    return json.dumps(doc | {"exit_code": 0})


DEEP = "[" * 1000 + "]" * 1000

# (lines of the report, the exit code of report merge, what its message says)
MERGED = [
    ([_header(), _outcome(1), _outcome(2)], 3, "cut short: no summary line; 2 recorded, 0 not done"),
    ([_header(version=999), _outcome(1), _outcome(2), _summary(unchanged=2)], 3, "a report of version 999"),
    (
        [_header("plan"), _outcome(1), _outcome(2), _summary(unchanged=2)],
        3,
        "line 4: the summary line says apply, the header plan",
    ),
    ([_header("destroy"), _outcome(1), _summary(unchanged=1)], 3, "the header names no plan or apply run"),
    ([_header(), _outcome(-1), _summary(unchanged=1)], 3, "line 2: Expected `int` >= 1"),
    ([_header(), _outcome(10**30), _summary(unchanged=1)], 3, "line 2: Expected `int` <= 9223372036854775807"),
    ([_header(), _outcome(True), _summary(unchanged=1)], 3, "line 2: Expected `int`, got `bool`"),
    ([_header(), DEEP, _summary()], 3, "line 2 is nested deeper than 32 levels"),
    ([_header(), '{"integration_id": 1, "x": ' + DEEP + "}", _summary()], 3, "line 2 is nested deeper"),
    ([_header(), '{"x": "' + "a" * (17 * 1024 * 1024) + '"}', _summary()], 3, "line 2 is longer than 16,777,216"),
]


@pytest.mark.parametrize(("lines", "code", "says"), MERGED, ids=range(len(MERGED)))
def test_report_merge_believes_nothing_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], code: int, says: str
) -> None:
    report = tmp_path / "shard.jsonl"
    report.write_text("\n".join(lines) + "\n")
    junit = tmp_path / "merged.xml"
    assert main(["report", "merge", str(report), "--junit", str(junit)]) == code
    out, err = capsys.readouterr()
    assert says in out + err, out + err
    assert "Traceback" not in err and "RecursionError" not in out + err
    import xml.etree.ElementTree as ET

    ET.parse(junit)


def test_report_merge_refuses_reports_of_two_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.jsonl"
    a.write_text("\n".join([_header("plan", selected=1), _outcome(1), _summary("plan", unchanged=1)]) + "\n")
    b = tmp_path / "b.jsonl"
    b.write_text("\n".join([_header("apply", selected=1), _outcome(2), _summary("apply", unchanged=1)]) + "\n")
    assert main(["report", "merge", str(a), str(b)]) == 2
    assert "the reports mix apply and plan runs" in capsys.readouterr().err


RETRIED = [
    ([_header(), DEEP, _summary()], "line 2 is nested deeper than 32 levels"),
    ([_header(), _outcome(-1), _summary()], "line 2: Expected `int` >= 1"),
    ([_header(), _outcome(10**30), _summary()], "line 2: Expected `int` <= 9223372036854775807"),
    ([_header(), '{"x": "' + "a" * (17 * 1024 * 1024) + '"}'], "line 2 is longer than 16,777,216 bytes"),
    ([SECRET], "line 1 is not JSON: not a report"),
]


@pytest.mark.parametrize(("lines", "says"), RETRIED, ids=range(len(RETRIED)))
def test_retry_failed_believes_nothing_it_reads(
    inventory: Path, capsys: pytest.CaptureFixture[str], lines: list[str], says: str
) -> None:
    report = inventory.parent / "earlier.jsonl"
    report.write_text("\n".join(lines) + "\n")
    assert main(["plan", str(inventory), "--retry-failed", str(report)]) == 2
    err = capsys.readouterr().err
    assert f"--retry-failed {report}: {says}" in err, err
    assert "Traceback" not in err and SECRET not in err


# -- names with control and bidi characters ---------------------------------------------------

# ESC (with a terminal title sequence), BEL, NUL, a C1 CSI, DEL, the bidi override, isolate
# and marks: each refused in a name, each spelled out by every sink that meets one anyway.
HOSTILE_NAMES = ["\x1b]0;T\x07", "a\x00b", "\x9b2J", "x\x7f", "\u202egnp.exe", "\u2066i\u2069", "m\u200e", "\u061cy"]
RAW = __import__("re").compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _inventory_with(tmp_path: Path, where: str, name: str) -> Path:
    status = {"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}
    account = {"public_key": "env:P", "secret_key": "env:S"}
    doc: dict[str, object] = {
        "accounts": {name if where == "account" else "acme": account},
        "status_sets": {name if where == "set" else "std": {"statuses": [status]}},
        "integrations": [
            {
                "id": 1,
                "account": name if where == "account" else "acme",
                "status_set": name if where == "set" else "std",
                "tags": [name if where == "tag" else "eu"],
            }
        ],
    }
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
@pytest.mark.parametrize(
    ("where", "path"), [("account", "$.accounts"), ("set", "$.status_sets"), ("tag", "$.integrations[0].tags[0]")]
)
def test_validate_refuses_a_name_with_a_control_or_bidi_character(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    where: str,
    path: str,
) -> None:
    monkeypatch.setenv("P", "p" * 8)
    monkeypatch.setenv("S", "s" * 8)
    inventory = _inventory_with(tmp_path, where, name)
    assert main(["validate", str(inventory)]) == 2
    out = capsys.readouterr().out
    assert f"{inventory}: {path}" in out and "a control or bidi character: not allowed in a name" in out, out
    assert not RAW.search(out), out
    assert main(["validate", str(inventory), "--format", "json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert [p["path"].startswith(path) for p in doc["problems"]] == [True], doc["problems"]


def test_a_name_with_ordinary_unicode_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P", "p" * 8)
    monkeypatch.setenv("S", "s" * 8)
    for where in ("account", "set", "tag"):
        inventory = _inventory_with(tmp_path, where, "Bücher-Müller 👩‍👩‍👧 שלום")
        assert load(inventory).valid, where


def _hostile_report(tmp_path: Path) -> Path:
    """A shard's report as a hostile user can write it: names, tags, details, reasons,
    status names and external ids with every character of the rule."""
    bad = "".join(HOSTILE_NAMES)
    change = {"op": "~", "external_id": f"x{bad}", "before": {"en-gb": f"old{bad}"}, "after": {"en-gb": f"new{bad}"}}
    outcomes = [
        {"integration_id": 1, "account": f"acme{bad}", "result": "failed", "attempts": 1, "tags": [f"t{bad}"],
         "error": {"kind": "client", "http_status": 400, "code": f"c{bad}", "detail": f"d{bad}", "pointer": f"/p{bad}"},
         "changes": [change], "started_at": 1.0, "ended_at": 2.0},
        {"integration_id": 2, "account": f"acme{bad}", "result": "skipped", "reason": f"r{bad}", "tags": [f"t{bad}"],
         "warnings": [f"w{bad}"], "started_at": 1.0, "ended_at": 2.0},
        {"integration_id": 3, "account": f"b{bad}", "result": "changed", "changes": [change], "added": 0, "changed": 1,
         "mapping_changes": [{"category": "CANCEL", "before": f"6{bad}", "after": None, "was_valid": True}],
         "started_at": 1.0, "ended_at": 2.0},
    ]  # fmt: skip
    stats = {"unchanged": 0, "changed": 0, "failed": 0, "skipped": 0, "throttled": 2, "requests": 3}
    summary = {
        "summary": True,
        "mode": "plan",
        "accounts": {f"acme{bad}": stats | {"failed": 1, "skipped": 1}, f"b{bad}": stats | {"changed": 1}},
        "duration_s": 1.0,
        "stopped": f"s{bad}",
        "exit_code": 1,
    }
    lines = [_header("plan", selected=3).replace('"inventory": "i.toml"', f'"inventory": {json.dumps("i" + bad)}')]
    lines += [json.dumps(o) for o in outcomes] + [json.dumps(summary)]
    report = tmp_path / "shard.jsonl"
    report.write_text("\n".join(lines) + "\n")
    return report


def test_every_sink_of_report_merge_holds_hostile_names_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xml.etree.ElementTree as ET

    import html5lib
    from prometheus_client.parser import text_string_to_metric_families

    report = _hostile_report(tmp_path)
    junit, metrics, page = tmp_path / "m.xml", tmp_path / "m.prom", tmp_path / "m.html"
    args = ["report", "merge", str(report), "--junit", str(junit), "--metrics", str(metrics), "--html", str(page)]
    assert main(args) == 3  # a skipped integration and a stop: exit 3
    out, err = capsys.readouterr()
    assert "acme" in out and "integration 1" in out
    assert not RAW.search(out + err), (RAW.search(out + err), out)
    ET.parse(junit)
    assert not RAW.search(junit.read_text())
    families = list(text_string_to_metric_families(metrics.read_text()))
    accounts = {s.labels["account"] for f in families for s in f.samples if "account" in s.labels}
    assert len(accounts) == 2 and not any(RAW.search(a) for a in accounts), accounts
    assert not RAW.search(metrics.read_text())
    html5lib.HTMLParser(strict=True).parse(page.read_text())
    assert not RAW.search(page.read_text().replace("\n", "").replace("\t", ""))
    assert main([*args[:3], "--format", "json"]) == 3
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert not RAW.search(out) and any(a.startswith("acme") for a in doc["accounts"])


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def test_notifications_hold_hostile_names_safely(tmp_path: Path) -> None:
    from batchsync.outputs.merge import merge
    from batchsync.outputs.notify import json_message, slack_message
    from batchsync.outputs.report import read_report

    merged = merge([read_report(str(_hostile_report(tmp_path)))])
    failures = [o for o in merged.outcomes if o.result == "failed"]
    assert failures
    for build in (slack_message, json_message):
        message = build(merged.summary, "plan", 1, failures)
        raw = [t for t in _strings(message) if RAW.search(t.replace("\n", ""))]
        assert not raw, (build.__name__, raw)


def test_a_seed_file_error_quotes_no_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A seed file holds credentials: one put in the wrong field is not echoed."""
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"accounts": [{"name": "a", "public_key": "p", "secret_key": "s", "auth": SECRET}]}))
    assert main(["sandbox", "--seed-file", str(seed), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "$.accounts[0].auth" in err and SECRET not in err


def test_a_usage_error_spells_out_control_characters_of_a_value(
    inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value typed with an escape sequence (a terminal title, a bell) is shown, never acted on."""
    code = main(["plan", str(inventory), "--limit", "x\x1b]0;PWN\x07"])
    _, err = capsys.readouterr()
    assert code == 2 and "\x1b" not in err and "\x07" not in err and "x\\x1b]0;PWN\\x07" in err
