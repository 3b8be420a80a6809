"""pywikibot through mw-auth-proxy, with no credentials: read, edit, kill
every session on the wiki, edit again.

pywikibot reads its configuration when it is imported, so this script first
writes a user-config.py into a temporary PYWIKIBOT_DIR (the smallest one that
works, see README.md) and only then imports pywikibot. There is no password
file: pywikibot compares meta=userinfo with usernames[...] and, since the
proxy makes userinfo show the bot, takes itself as logged in and never tries
to log in.
"""

import atexit
import importlib.metadata
import os
import shutil
import sys
import tempfile

# No __pycache__ beside the scripts.
sys.dont_write_bytecode = True

print(f"client pywikibot {importlib.metadata.version('pywikibot')}", flush=True)

from clientcheck import Run, expect, marker  # noqa: E402

FAMILY = "proxy"


def user_config(api_url, user):
    """The smallest user-config.py that makes pywikibot work through the proxy."""
    return (
        f"family_files[{FAMILY!r}] = {api_url!r}\n"
        f"family = {FAMILY!r}\n"
        f"mylang = {FAMILY!r}\n"
        f"usernames[{FAMILY!r}][{FAMILY!r}] = {user!r}\n"
        # Not needed to work. put_throttle: without it pywikibot waits about
        # 10 s before each save. The retry settings only make a failing run
        # end sooner (by default pywikibot retries a 5xx answer 15 times,
        # 5 s apart and more).
        "put_throttle = 0\n"
        "max_retries = 2\n"
        "retry_wait = 1\n"
        "retry_max = 2\n"
    )


def make_pywikibot_dir(run):
    base = tempfile.mkdtemp(prefix="pywikibot-")
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    with open(os.path.join(base, "user-config.py"), "w", encoding="utf-8") as config:
        config.write(user_config(run.api_url, run.bot_user))
    os.environ["PYWIKIBOT_DIR"] = base
    # Never let a user-config.py elsewhere take over.
    os.environ.pop("PYWIKIBOT_NO_USER_CONFIG", None)
    return base


def save(run, pywikibot, page, text, summary, what):
    page.text = text
    page.save(summary=summary, quiet=True)
    fresh = pywikibot.Page(page.site, page.title())
    revision = fresh.latest_revision
    expect(revision.user == run.bot_user,
           f"{what}: pywikibot reports revision {revision.revid} by {revision.user!r}, "
           f"expected {run.bot_user!r}")
    expect(fresh.text.strip() == text.strip(),
           f"{what}: reading the page back gave other text")
    run.step(f"{what} of {page.title()!r}: revision {revision.revid}")
    return run.check_latest_revision(page.title(), revision.revid, what)


def main(run):
    base = make_pywikibot_dir(run)
    import pywikibot
    import pywikibot.comms.http

    expect(pywikibot.__version__ == importlib.metadata.version("pywikibot"),
           f"imported pywikibot {pywikibot.__version__}, not the installed one")
    run.watch_requests(pywikibot.comms.http.session)
    expect(pywikibot.config.base_dir == base,
           f"pywikibot uses the config in {pywikibot.config.base_dir}, not {base}")

    site = pywikibot.Site(FAMILY, FAMILY)
    run.step(f"Site({FAMILY}:{FAMILY}) for {run.api_url}: username={site.username()!r} "
             f"user={site.user()!r} logged_in={site.logged_in()}")
    expect(site.logged_in(), "pywikibot does not see itself logged in through the proxy")
    expect(site.user() == run.bot_user,
           f"pywikibot sees user {site.user()!r}, expected {run.bot_user!r}")

    main_page = pywikibot.Page(site, "Main Page").text
    expect(main_page.strip(), "reading Main Page gave no text")
    run.step(f"read Main Page ({len(main_page)} chars)")

    page = pywikibot.Page(site, run.title("pywikibot"))
    first_rev = save(run, pywikibot, page,
                     f"First edit through the proxy by pywikibot.\n\n{marker()}",
                     "mw-auth-proxy client test: first edit", "first edit")

    run.check_answers("before the sessions died")

    run.kill_sessions()

    second_rev = save(run, pywikibot, page,
                      "Second edit through the proxy by pywikibot, after every session died."
                      f"\n\n{marker()}",
                      "mw-auth-proxy client test: edit after the sessions died", "second edit")
    expect(second_rev != first_rev, "the second edit made no new revision")
    run.check_answers("after the sessions died")


if __name__ == "__main__":
    Run("pywikibot").finish(main)
