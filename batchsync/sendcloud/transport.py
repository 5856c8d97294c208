"""The engine's :class:`~batchsync.engine.api.Api` over HTTP: one aiohttp session, a client per account.

The caller (the run, an import) owns the session's lifetime through ``async with HttpApi(...)``;
each account gets a :class:`~batchsync.sendcloud.client.Client` with its base URL and credentials.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from types import TracebackType

from batchsync.model import Account, BasicCredentials, OAuth2Credentials
from batchsync.redact import Redactor
from batchsync.sendcloud._aiohttp import aiohttp
from batchsync.sendcloud.auth import Authenticator, BasicAuthenticator, OAuth2Authenticator
from batchsync.sendcloud.client import Client


def tls_context(urls: Iterable[str]) -> ssl.SSLContext:
    """The connector's TLS context: the system's verified default when a URL of the run is
    ``https://`` (loading the CA bundle costs 80-150 ms, paid only then), else one that
    trusts nothing, so that a TLS connection nobody expected fails closed."""
    if any(url.lower().startswith("https:") for url in urls):
        context = ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, and trusts no CA
    context.set_alpn_protocols(("http/1.1",))
    return context


class HttpApi:
    """``async with HttpApi(concurrency=64, timeout=30) as api: engine = Engine(..., api, ...)``

    ``urls`` are every URL the run may contact (the accounts' base URLs, token URLs):
    they decide the TLS context (see :func:`tls_context`); None means "any", so https.
    ``redactor`` (the run's, which knows the accounts' credentials from the load: see
    :meth:`batchsync.model.Account.echoes`) learns each OAuth2 token the moment it is
    issued, before any answer could echo it into a log line or an output.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        timeout: float,
        base_url: str | None = None,
        urls: Iterable[str] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.concurrency = max(1, concurrency)
        self.redactor = redactor
        self.timeout = timeout
        self.base_url = base_url  # replaces every account's (--base-url, --sandbox)
        self.urls = ["https:"] if urls is None else [*urls, *([base_url] if base_url else [])]
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, Client] = {}
        self._auths: list[Authenticator] = []

    async def __aenter__(self) -> HttpApi:
        connector = aiohttp.TCPConnector(
            limit=self.concurrency,
            limit_per_host=0,
            ssl=tls_context(self.urls),
        )
        # No cookie jar: the session is every account's (and their token endpoints'), whose
        # requests stand alone on their Authorization header; a jar would hand a cookie one
        # account's answer set to every other account's requests to that host (and cost a
        # lookup per request).
        self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        # aiohttp sends a GET again, by itself, on a new connection when a kept-alive one is
        # dropped under it: a request the server may have counted, that no bucket of the
        # account's paid for and no attempt counts (a server that resets connections was
        # sent more reads than the declared budget). The engine retries what fails, on the
        # budget: aiohttp must not. (Private, but what aiohttp's own test client sets;
        # tests/engine/test_engine_http.py checks the sandbox's count against ours.)
        self._session._retry_connection = False
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def account(self, account: Account) -> Client:
        client = self._clients.get(account.name)
        if client is None:
            assert self._session is not None, "use HttpApi in an async with block"
            auth = self._authenticator(account)
            self._auths.append(auth)
            client = Client(
                self._session, self.base_url or account.base_url, auth, timeout=self.timeout, name=account.name
            )
            self._clients[account.name] = client
        return client

    def token_url(self, account: Account) -> str | None:
        """Where an OAuth2 account gets its tokens: with --base-url (or --sandbox) everything
        the account contacts goes there, its token endpoint included."""
        creds = account.credentials
        if not isinstance(creds, OAuth2Credentials):
            return None
        return f"{self.base_url.rstrip('/')}/oauth2/token" if self.base_url else creds.token_url

    def _authenticator(self, account: Account) -> Authenticator:
        creds = account.credentials
        if isinstance(creds, BasicCredentials):
            return BasicAuthenticator(creds.public_key, creds.secret_key)
        assert self._session is not None
        return OAuth2Authenticator(
            self._session,
            self.token_url(account) or creds.token_url,
            creds.client_id,
            creds.client_secret,
            creds.scope,
            timeout=self.timeout,
            name=account.name,
            on_token=None if self.redactor is None else self._learn,
        )

    def _learn(self, token: str) -> None:
        assert self.redactor is not None  # handed to the authenticators only with one
        self.redactor.add((token,))

    def secrets(self) -> tuple[str, ...]:
        """Every credential value in use, tokens issued so far included."""
        return tuple(value for auth in self._auths for value in auth.secrets())
