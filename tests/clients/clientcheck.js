'use strict';
// What the Node client scripts share: their inputs, the raw API reads that
// cross-check what a library reports, killing every session, and the way a
// run ends (`ok <client>` or a clear failure and a non-zero exit).
//
// Only Node's own modules (and its global fetch) are used here, so that a
// check never depends on the client library it is checking.

const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const REQUIRED_ENV = ['PROXY_API_URL', 'WIKI_DIR', 'SCRIPTS_DIR', 'BOT_USER_NAME', 'PAGE_PREFIX'];
const RAW_TIMEOUT_MS = 60000;

class CheckFailed extends Error {}

function expect(condition, message) {
	if (!condition) {
		throw new CheckFailed(message);
	}
}

function fail(client, message) {
	message = String(message).split(/\s+/).join(' ').trim();
	process.stderr.write(`FAIL ${client}: ${message}\n`);
	process.exit(1);
}

/** The exact installed version of a package, from its own package.json. */
function packageVersion(name) {
	const main = require.resolve(name);
	let dir = path.dirname(main);
	for (;;) {
		const candidate = path.join(dir, 'package.json');
		if (fs.existsSync(candidate)) {
			const meta = JSON.parse(fs.readFileSync(candidate, 'utf8'));
			if (meta.name === name) {
				return meta.version;
			}
		}
		const parent = path.dirname(dir);
		if (parent === dir) {
			throw new Error(`no package.json for ${name} above ${main}`);
		}
		dir = parent;
	}
}

/** A line that makes each edit's text unique, so every save is a real edit. */
function marker() {
	return `run ${process.pid} at ${Date.now() / 1000}`;
}

class Run {
	constructor(client) {
		this.client = client;
		const missing = REQUIRED_ENV.filter((name) => !process.env[name]);
		if (missing.length) {
			fail(client, `missing environment variable(s): ${missing.join(', ')}`);
		}
		this.apiUrl = process.env.PROXY_API_URL;
		this.wikiDir = process.env.WIKI_DIR;
		this.scriptsDir = process.env.SCRIPTS_DIR;
		this.botUser = process.env.BOT_USER_NAME;
		this.prefix = process.env.PAGE_PREFIX;
		this.started = process.hrtime.bigint();
		// [HTTP status, MediaWiki-API-Error codes] of every answer the library
		// got, where the library lets us watch (see watchAxios).
		this.answers = [];
		let url;
		try {
			url = new URL(this.apiUrl);
		} catch (err) {
			url = null;
		}
		if (!url || !['http:', 'https:'].includes(url.protocol) || !url.pathname.endsWith('/api.php')) {
			fail(client, `PROXY_API_URL must be http(s)://HOST:PORT/.../api.php, not ${JSON.stringify(this.apiUrl)}`);
		}
		this.url = url;
	}

	title(suffix) {
		return this.prefix + suffix;
	}

	step(message) {
		const secs = Number(process.hrtime.bigint() - this.started) / 1e9;
		process.stdout.write(`[${secs.toFixed(2).padStart(6)}s] ${message}\n`);
	}

	// -- what the library was answered ----------------------------------

	/** Record every answer an axios instance gets (an interceptor). */
	watchAxios(instance) {
		instance.interceptors.response.use(
			(response) => {
				this.answers.push([response.status, `${response.headers['mediawiki-api-error'] || ''}`]);
				return response;
			},
			(error) => {
				const response = error && error.response;
				this.answers.push([response ? response.status : `${(error && error.code) || 'no answer'}`,
					`${(response && response.headers && response.headers['mediawiki-api-error']) || ''}`]);
				return Promise.reject(error);
			},
		);
	}

	/**
	 * Fail if the library was answered an HTTP error (a retry inside the
	 * library must not hide one); name the API errors it handled.
	 */
	checkAnswers(what) {
		const answers = this.answers;
		this.answers = [];
		const codes = [...new Set(answers.flatMap(([, header]) =>
			header.split(',').map((code) => code.trim()).filter(Boolean)))].sort();
		if (codes.length) {
			this.step(`${what}: the library was answered API error(s) ${codes.join(', ')} and handled them itself`);
		}
		const failed = answers.map(([status]) => status).filter((status) => status !== 200);
		expect(!failed.length, `${what}: the library was answered HTTP ${JSON.stringify(failed)} (API errors: ${codes.join(', ') || 'none'})`);
	}

	// -- raw reads through the proxy, independent of the library ----------

	async rawQuery(params) {
		const query = new URLSearchParams({ ...params, action: 'query', format: 'json', formatversion: '2' });
		const url = `${this.apiUrl}?${query}`;
		const response = await fetch(url, {
			headers: { 'User-Agent': 'mw-auth-proxy client check' },
			signal: AbortSignal.timeout(RAW_TIMEOUT_MS),
		});
		const body = await response.text();
		if (response.status !== 200) {
			throw new CheckFailed(`raw read ${url} answered HTTP ${response.status}: ${body.slice(0, 300)}`);
		}
		const data = JSON.parse(body);
		if (data.error) {
			throw new CheckFailed(`raw read ${url} answered error ${JSON.stringify(data.error)}`);
		}
		return data;
	}

	/** [revid, user] of the page's latest revision, read through the proxy. */
	async latestRevision(title) {
		const data = await this.rawQuery({ prop: 'revisions', titles: title, rvprop: 'ids|user', rvlimit: '1' });
		const page = data.query.pages[0];
		if (page.missing || !page.revisions || !page.revisions.length) {
			throw new CheckFailed(`page ${JSON.stringify(title)} has no revision: ${JSON.stringify(page)}`);
		}
		return [page.revisions[0].revid, page.revisions[0].user];
	}

	/** The page's latest revision is `revid` (if given) and the bot's. */
	async checkLatestRevision(title, revid, what) {
		const [latest, user] = await this.latestRevision(title);
		if (revid !== null && revid !== undefined) {
			expect(latest === revid, `${what}: latest revision of ${JSON.stringify(title)} is ${latest}, expected ${revid}`);
		}
		expect(user === this.botUser,
			`${what}: revision ${latest} of ${JSON.stringify(title)} is by ${JSON.stringify(user)}, expected ${JSON.stringify(this.botUser)}`);
		this.step(`${what}: revision ${latest} is by ${user}`);
		return latest;
	}

	// -- killing every session ------------------------------------------------

	/** Run `wiki kill-sessions WIKI_DIR`: every server-side session dies. */
	killSessions() {
		const script = path.join(this.scriptsDir, 'wiki');
		let out;
		try {
			out = execFileSync(script, ['kill-sessions', this.wikiDir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
		} catch (err) {
			const said = `${err.stderr || ''}`.trim() || `${err.stdout || ''}`.trim() || err.message;
			throw new CheckFailed(`${script} kill-sessions ${this.wikiDir} failed (exit ${err.status}): ${said}`);
		}
		this.step(`killed every session on the wiki (${out.trim() || '?'} session rows)`);
	}

	// -- ending -----------------------------------------------------------------

	/** Run body(this); print `ok <client>` or fail clearly. */
	finish(body) {
		Promise.resolve()
			.then(() => body(this))
			.then(() => {
				process.stdout.write(`ok ${this.client}\n`);
				process.exitCode = 0;
			})
			.catch((err) => {
				if (err instanceof CheckFailed) {
					fail(this.client, err.message);
				}
				process.stderr.write(`${(err && err.stack) || err}\n`);
				fail(this.client, describe(err));
			});
	}
}

/** A library error's code and message, as plainly as it can be had. */
function describe(err) {
	if (!err || typeof err !== 'object') {
		return String(err);
	}
	const code = err.code ? `${err.code}: ` : '';
	let text = `${err.name || 'Error'}: ${code}${err.info || err.message || JSON.stringify(err)}`;
	const response = err.response;
	if (response && response.status) {
		text += ` (HTTP ${response.status})`;
	}
	if (response && response.data !== undefined) {
		const data = typeof response.data === 'string' ? response.data : JSON.stringify(response.data);
		text += `; the answer was: ${data.slice(0, 500)}`;
	}
	return text;
}

module.exports = { Run, CheckFailed, expect, fail, marker, packageVersion, describe };
