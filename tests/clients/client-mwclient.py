"""mwclient through mw-auth-proxy, with no credentials: read, edit, kill
every session on the wiki, edit again.

mwclient reads meta=userinfo when the Site is made; with force_login=True
(the default) it refuses page.edit() client-side unless that showed a
logged-in user, and it sends assert=user with each edit. Through the proxy
userinfo shows the bot, so no login() is called.
"""

import sys
import urllib.parse

import mwclient

# No __pycache__ beside the scripts.
sys.dont_write_bytecode = True

print(f"client mwclient {mwclient.__version__}", flush=True)

from clientcheck import Run, expect, marker  # noqa: E402


def site_for(api_url):
    """mwclient.Site for .../api.php: host, path up to api.php, scheme."""
    url = urllib.parse.urlsplit(api_url)
    path = url.path[: -len("api.php")]
    # max_retries/retry_timeout only make a failing run end sooner (the
    # defaults retry a 5xx answer 25 times, 30 s apart and more).
    return mwclient.Site(url.netloc, path=path, scheme=url.scheme,
                         clients_useragent="mw-auth-proxy client test",
                         max_retries=2, retry_timeout=1)


def main(run):
    site = site_for(run.api_url)
    run.watch_requests(site.connection)
    run.step(f"Site({run.api_url}): username={site.username!r} logged_in={site.logged_in} "
             f"force_login={site.force_login}")
    expect(site.logged_in, "mwclient does not see a logged-in user through the proxy")
    expect(site.username == run.bot_user,
           f"mwclient sees user {site.username!r}, expected {run.bot_user!r}")

    main_page = site.pages["Main Page"].text()
    expect(main_page.strip(), "reading Main Page gave no text")
    run.step(f"read Main Page ({len(main_page)} chars)")

    title = run.title("mwclient")
    page = site.pages[title]
    first = f"First edit through the proxy by mwclient.\n\n{marker()}"
    result = page.edit(first, summary="mw-auth-proxy client test: first edit")
    expect(result.get("result") == "Success", f"first edit answered {result}")
    first_rev = result["newrevid"]
    run.step(f"first edit of {title!r}: revision {first_rev}")
    expect(site.pages[title].text().strip() == first.strip(),
           "reading the page back after the first edit gave other text")
    revisions = list(site.pages[title].revisions(prop="ids|user", max_items=1, api_chunk_size=1))
    expect(revisions and revisions[0]["revid"] == first_rev and revisions[0]["user"] == run.bot_user,
           f"mwclient reports latest revision {revisions}, expected {first_rev} by {run.bot_user}")
    run.check_latest_revision(title, first_rev, "first edit")
    run.check_answers("before the sessions died")

    run.kill_sessions()

    second = f"Second edit through the proxy by mwclient, after every session died.\n\n{marker()}"
    result = page.edit(second, summary="mw-auth-proxy client test: edit after the sessions died")
    expect(result.get("result") == "Success", f"second edit answered {result}")
    second_rev = result["newrevid"]
    expect(second_rev != first_rev, "the second edit made no new revision")
    run.step(f"second edit of {title!r}: revision {second_rev}")
    expect(site.pages[title].text().strip() == second.strip(),
           "reading the page back after the second edit gave other text")
    revisions = list(site.pages[title].revisions(prop="ids|user", max_items=1, api_chunk_size=1))
    expect(revisions and revisions[0]["revid"] == second_rev and revisions[0]["user"] == run.bot_user,
           f"mwclient reports latest revision {revisions}, expected {second_rev} by {run.bot_user}")
    run.check_latest_revision(title, second_rev, "second edit")
    run.check_answers("after the sessions died")


if __name__ == "__main__":
    Run("mwclient").finish(main)
