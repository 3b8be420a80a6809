'use strict';
// mwn through mw-auth-proxy, with no credentials and no login(): read,
// edit, kill every session on the wiki, edit again.
//
// mwn needs a CSRF token for save(); getCsrfToken() fetches one through the
// proxy, and it is the bot's because the proxy's session is. After the
// sessions die the proxy logs in again and replays mwn's edit, but the
// token it carries belonged to the dead session: MediaWiki answers
// badtoken, and mwn fetches a new token and retries by itself.

const { packageVersion } = require('./clientcheck');

process.stdout.write(`client mwn ${packageVersion('mwn')}\n`);

const { Mwn } = require('mwn');
const { Run, expect, marker } = require('./clientcheck');

async function save(run, bot, title, text, summary, what) {
	const result = await bot.save(title, text, summary);
	expect(result && result.result === 'Success', `${what}: save answered ${JSON.stringify(result)}`);
	const revid = result.newrevid;
	run.step(`${what} of ${JSON.stringify(title)}: revision ${revid}`);
	const page = await bot.read(title, { rvprop: ['content', 'ids', 'user'] });
	const revision = page.revisions && page.revisions[0];
	expect(revision && revision.revid === revid && revision.user === run.botUser,
		`${what}: mwn reads latest revision ${JSON.stringify(revision && { revid: revision.revid, user: revision.user })}, ` +
		`expected ${revid} by ${run.botUser}`);
	expect(revision.content.trim() === text.trim(), `${what}: reading the page back gave other text`);
	return run.checkLatestRevision(title, revid, what);
}

async function main(run) {
	const bot = new Mwn({
		apiUrl: run.apiUrl,
		userAgent: 'mw-auth-proxy client test (mwn)',
		// Only makes a failing run end sooner (mwn waits 5 s before retrying
		// a 5xx answer or a refused connection).
		retryPause: 1000,
	});
	run.watchAxios(bot.axiosInstance);

	const userinfo = await bot.userinfo();
	run.step(`Mwn({apiUrl: ${run.apiUrl}}): userinfo name=${JSON.stringify(userinfo.name)}`);
	expect(userinfo.name === run.botUser && !userinfo.anon,
		`mwn sees user ${JSON.stringify(userinfo.name)} through the proxy, expected ${JSON.stringify(run.botUser)}`);

	const token = await bot.getCsrfToken();
	expect(token && token !== '+\\', `getCsrfToken() gave ${JSON.stringify(token)}, not a logged-in user's token`);
	run.step('got a CSRF token');

	const mainPage = await bot.read('Main Page');
	const mainText = mainPage.revisions && mainPage.revisions[0] && mainPage.revisions[0].content;
	expect(mainText && mainText.trim(), 'reading Main Page gave no text');
	run.step(`read Main Page (${mainText.length} chars)`);

	const title = run.title('mwn');
	const first = await save(run, bot, title, `First edit through the proxy by mwn.\n\n${marker()}`,
		'mw-auth-proxy client test: first edit', 'first edit');

	run.checkAnswers('before the sessions died');

	run.killSessions();

	const second = await save(run, bot, title,
		`Second edit through the proxy by mwn, after every session died.\n\n${marker()}`,
		'mw-auth-proxy client test: edit after the sessions died', 'second edit');
	expect(second !== first, 'the second edit made no new revision');
	run.checkAnswers('after the sessions died');
}

new Run('mwn').finish(main);
