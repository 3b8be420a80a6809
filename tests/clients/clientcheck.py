"""What the Python client scripts share: their inputs, the raw API reads
that cross-check what a library reports, killing every session, and the
way a run ends (``ok <client>`` or a clear failure and a non-zero exit).

Only the standard library is used here, so that a check never depends on
the client library it is checking.
"""

import json
import os
import subprocess
import sys
import time
import traceback
import urllib.parse
import urllib.request

REQUIRED_ENV = ("PROXY_API_URL", "WIKI_DIR", "SCRIPTS_DIR", "BOT_USER_NAME", "PAGE_PREFIX")
RAW_TIMEOUT_SECS = 60


class CheckFailed(Exception):
    """A check that did not hold; its message says what was expected."""


class Run:
    """One client's run: its inputs and its steps' log."""

    def __init__(self, client):
        self.client = client
        missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
        if missing:
            fail(client, "missing environment variable(s): " + ", ".join(missing))
        self.api_url = os.environ["PROXY_API_URL"]
        self.wiki_dir = os.environ["WIKI_DIR"]
        self.scripts_dir = os.environ["SCRIPTS_DIR"]
        self.bot_user = os.environ["BOT_USER_NAME"]
        self.prefix = os.environ["PAGE_PREFIX"]
        self.started = time.monotonic()
        # (HTTP status, MediaWiki-API-Error codes) of every answer the
        # library got, where the library lets us watch (see watch_requests).
        self.answers = []
        parsed = urllib.parse.urlsplit(self.api_url)
        if parsed.scheme not in ("http", "https") or not parsed.path.endswith("/api.php"):
            fail(client, f"PROXY_API_URL must be http(s)://HOST:PORT/.../api.php, not {self.api_url!r}")

    def title(self, suffix):
        return self.prefix + suffix

    def step(self, message):
        print(f"[{time.monotonic() - self.started:6.2f}s] {message}", flush=True)

    # -- what the library was answered ----------------------------------

    def watch_requests(self, session):
        """Record every answer a requests.Session gets (a response hook)."""
        def hook(response, *args, **kwargs):
            self.answers.append((response.status_code,
                                 response.headers.get("MediaWiki-API-Error", "")))
        session.hooks["response"].append(hook)

    def check_answers(self, what):
        """Fail if the library was answered an HTTP error (a retry inside
        the library must not hide one); name the API errors it handled."""
        answers, self.answers = self.answers, []
        codes = sorted({code.strip() for _, header in answers
                        for code in header.split(",") if code.strip()})
        if codes:
            self.step(f"{what}: the library was answered API error(s) {', '.join(codes)} "
                      "and handled them itself")
        failed = [status for status, _ in answers if status != 200]
        expect(not failed, f"{what}: the library was answered HTTP {failed} "
                           f"(API errors: {', '.join(codes) or 'none'})")

    # -- raw reads through the proxy, independent of the library ----------

    def raw_query(self, **params):
        params.update(action="query", format="json", formatversion="2")
        url = self.api_url + "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, headers={"User-Agent": "mw-auth-proxy client check"})
        with urllib.request.urlopen(request, timeout=RAW_TIMEOUT_SECS) as response:
            status = response.status
            body = response.read()
        if status != 200:
            raise CheckFailed(f"raw read {url} answered HTTP {status}")
        data = json.loads(body)
        if "error" in data:
            raise CheckFailed(f"raw read {url} answered error {data['error']}")
        return data

    def latest_revision(self, title):
        """(revid, user) of the page's latest revision, read through the proxy."""
        data = self.raw_query(prop="revisions", titles=title, rvprop="ids|user", rvlimit="1")
        page = data["query"]["pages"][0]
        if page.get("missing") or not page.get("revisions"):
            raise CheckFailed(f"page {title!r} has no revision: {page}")
        revision = page["revisions"][0]
        return revision["revid"], revision.get("user")

    def check_latest_revision(self, title, revid, what):
        """The page's latest revision is `revid` (if given) and the bot's."""
        latest, user = self.latest_revision(title)
        if revid is not None and latest != revid:
            raise CheckFailed(f"{what}: latest revision of {title!r} is {latest}, expected {revid}")
        expect(user == self.bot_user,
               f"{what}: revision {latest} of {title!r} is by {user!r}, expected {self.bot_user!r}")
        self.step(f"{what}: revision {latest} is by {user}")
        return latest

    # -- killing every session ------------------------------------------------

    def kill_sessions(self):
        """Run `wiki kill-sessions WIKI_DIR`: every server-side session dies."""
        script = os.path.join(self.scripts_dir, "wiki")
        result = subprocess.run([script, "kill-sessions", self.wiki_dir],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise CheckFailed(f"{script} kill-sessions {self.wiki_dir} exited {result.returncode}: "
                              f"{result.stderr.strip() or result.stdout.strip()}")
        self.step(f"killed every session on the wiki ({result.stdout.strip() or '?'} session rows)")

    # -- ending -----------------------------------------------------------------

    def finish(self, body):
        """Run body(self); print `ok <client>` or fail clearly."""
        try:
            body(self)
        except CheckFailed as err:
            fail(self.client, str(err))
        except Exception as err:  # any library error is a failure of the run
            traceback.print_exc()
            fail(self.client, f"{type(err).__name__}: {err}")
        print(f"ok {self.client}", flush=True)
        sys.exit(0)


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def fail(client, message):
    message = " ".join(str(message).split())
    sys.stdout.flush()
    print(f"FAIL {client}: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def marker():
    """A line that makes each edit's text unique, so every save is a real edit."""
    return f"run {os.getpid()} at {time.time():.6f}"
