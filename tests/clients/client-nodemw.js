'use strict';
// nodemw through mw-auth-proxy, with no credentials and no logIn(): read,
// edit, kill every session on the wiki, edit again.
//
// nodemw fetches a fresh CSRF token (meta=tokens&type=csrf) before every
// edit, so after the sessions die it is that token request that the proxy
// heals (log in again, replay); the edit then carries the new session's
// token.

const { packageVersion } = require('./clientcheck');

process.stdout.write(`client nodemw ${packageVersion('nodemw')}\n`);

const Bot = require('nodemw');
const { Run, expect, marker } = require('./clientcheck');

/** bot.method(...args, callback) as a promise of the callback's first result. */
function call(bot, method, ...args) {
	return new Promise((resolve, reject) => {
		bot[method](...args, (err, result) => (err ? reject(err) : resolve(result)));
	});
}

/** nodemw's constructor options for .../api.php. */
function botFor(apiUrl) {
	const url = new URL(apiUrl);
	return new Bot({
		protocol: url.protocol.replace(/:$/, ''),
		server: url.hostname,
		port: url.port || undefined,
		path: url.pathname.replace(/\/api\.php$/, ''),
		userAgent: 'mw-auth-proxy client test (nodemw)',
		debug: false,
	});
}

async function save(run, bot, title, text, summary, what) {
	const result = await call(bot, 'edit', title, text, summary, false);
	expect(result && result.result === 'Success', `${what}: edit answered ${JSON.stringify(result)}`);
	const revid = result.newrevid;
	run.step(`${what} of ${JSON.stringify(title)}: revision ${revid}`);
	const content = await call(bot, 'getArticle', title);
	expect(typeof content === 'string' && content.trim() === text.trim(), `${what}: reading the page back gave other text`);
	const revisions = await call(bot, 'getArticleRevisions', title);
	const latest = revisions && revisions[revisions.length - 1];
	expect(latest && latest.revid === revid && latest.user === run.botUser,
		`${what}: nodemw reads latest revision ${JSON.stringify(latest && { revid: latest.revid, user: latest.user })}, ` +
		`expected ${revid} by ${run.botUser}`);
	return run.checkLatestRevision(title, revid, what);
}

async function main(run) {
	const bot = botFor(run.apiUrl);

	const me = await call(bot, 'whoami');
	run.step(`Bot(${run.apiUrl}): whoami name=${JSON.stringify(me && me.name)}`);
	expect(me && me.name === run.botUser && me.anon === undefined,
		`nodemw sees user ${JSON.stringify(me && me.name)} through the proxy, expected ${JSON.stringify(run.botUser)}`);

	const mainText = await call(bot, 'getArticle', 'Main Page');
	expect(typeof mainText === 'string' && mainText.trim(), 'reading Main Page gave no text');
	run.step(`read Main Page (${mainText.length} chars)`);

	const title = run.title('nodemw');
	const first = await save(run, bot, title, `First edit through the proxy by nodemw.\n\n${marker()}`,
		'mw-auth-proxy client test: first edit', 'first edit');

	run.killSessions();

	const second = await save(run, bot, title,
		`Second edit through the proxy by nodemw, after every session died.\n\n${marker()}`,
		'mw-auth-proxy client test: edit after the sessions died', 'second edit');
	expect(second !== first, 'the second edit made no new revision');
}

new Run('nodemw').finish(main);
