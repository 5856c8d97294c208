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
from batchsync.inventory import insecure_http, load, url_problem
from batchsync.lock import account_lock_name
from batchsync.run import is_loopback

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
    ["plan", "{inv}", "--retry-failed", f"{{dir}}/{SECRET}.jsonl"],
    ["import", "{inv}", "-o", "{dir}/new.toml", "--account", SECRET],
    ["import", "{inv}", "-o", f"{{dir}}/{SECRET}/new.toml"],
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
        st.text(alphabet=st.sampled_from(list("ab1.-_:@/[]%?#~!$&'()*+,;= \x00\x1b\u00ad\u00fc\u202e")), max_size=30),
    )
)
def test_a_url_that_passes_the_check_is_one_aiohttp_can_send_to(url: str) -> None:
    from yarl import URL

    if url_problem(url) is not None:
        return
    for path in ("/shop-order-statuses", "/integrations", "/oauth2/token"):
        built = URL(url.rstrip("/") + path).with_query({"integration_id": "1"})
        host = built.raw_host
        assert host, url
        if ":" not in host:
            host.encode("idna")  # what the resolver does with it
        assert built.port is not None and 0 < built.port < 65536
    assert built.user is None and built.password is None
    is_loopback(url)
    insecure_http(url)
    account_lock_name("pub", url)

