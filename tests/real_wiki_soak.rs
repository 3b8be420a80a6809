//! A bounded soak against a real MediaWiki: 8 clients, 2,000 requests in
//! all (reads, and edits with a token each client fetched once, as bots
//! do), while every session is killed every 2 seconds. No client may see an
//! error, every edit must be applied exactly once, and the proxy may log in
//! no more than once per wipe plus the first time. Prints its figures.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::real_wiki::{ApiClient, ProxyProcess, RealWiki, WikiOptions};

const CLIENTS: usize = 8;
const REQUESTS_PER_CLIENT: usize = 250;
/// One request in this many is an edit.
const EDIT_EVERY: usize = 5;
const WIPE_INTERVAL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_through_session_wipes_every_two_seconds() {
    let wiki = Arc::new(RealWiki::start(WikiOptions::default()));
    let proxy = ProxyProcess::start_for(&wiki).await;
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let wipes = Arc::new(AtomicU64::new(0));
    let wiper = {
        let (wiki, stop, wipes) = (wiki.clone(), stop.clone(), wipes.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(WIPE_INTERVAL).await;
                let wiki = wiki.clone();
                tokio::task::spawn_blocking(move || wiki.kill_sessions())
                    .await
                    .unwrap();
                wipes.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client_id| {
            let client = ApiClient::through_proxy(&proxy.api_url());
            tokio::spawn(async move { run_client(client_id, client).await })
        })
        .collect();
    let mut edits_sent = Vec::new();
    let mut errors = Vec::new();
    for client in clients {
        let (edits, client_errors) = client.await.unwrap();
        edits_sent.push(edits);
        errors.extend(client_errors);
    }
    stop.store(true, Ordering::SeqCst);
    wiper.await.unwrap();
    let elapsed = started.elapsed();

    // Every edit exactly once: each client's page has one revision per edit,
    // each with its own text, all made by the bot.
    let direct = ApiClient::direct(wiki.api_url());
    let mut revisions_found = 0;
    for (client_id, sent) in edits_sent.iter().enumerate() {
        let title = format!("Soak {client_id}");
        let reply = direct
            .get(&[
                ("action", "query"),
                ("prop", "revisions"),
                ("titles", &title),
                ("rvprop", "user|content"),
                ("rvslots", "main"),
                ("rvlimit", "max"),
                ("formatversion", "2"),
            ])
            .await;
        let revisions = reply.json["query"]["pages"][0]["revisions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut texts: Vec<String> = revisions
            .iter()
            .map(|revision| {
                assert_eq!(revision["user"], "Admin");
                revision["slots"]["main"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        texts.sort();
        texts.dedup();
        assert_eq!(
            texts.len(),
            revisions.len(),
            "{title}: a text was written twice"
        );
        assert_eq!(revisions.len(), *sent, "{title}: revisions vs edits sent");
        revisions_found += revisions.len();
    }

    let logins = proxy
        .metric("mw_auth_proxy_logins_total{result=\"success\"}")
        .await;
    let replays = proxy.metric("mw_auth_proxy_replays_total").await;
    let wipes = wipes.load(Ordering::SeqCst);
    let requests = CLIENTS * REQUESTS_PER_CLIENT;
    println!(
        "soak: {requests} requests by {CLIENTS} clients in {:.1} s ({:.0} req/s), \
         {revisions_found} edits applied once each, {wipes} session wipes, \
         {logins} logins, {replays} replays, {} client errors",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        errors.len()
    );
    assert!(errors.is_empty(), "clients saw errors: {errors:#?}");
    assert!(wipes >= 3, "the soak must span several wipes, not {wipes}");
    assert!(
        logins <= (wipes + 1) as f64,
        "{logins} logins for {wipes} wipes"
    );
}

/// Reads and edits through the proxy; returns how many edits it made and
/// every error it saw.
async fn run_client(client_id: usize, client: ApiClient) -> (usize, Vec<String>) {
    let title = format!("Soak {client_id}");
    let mut errors = Vec::new();
    let mut edits = 0;
    // Fetched once: after a wipe the proxy must renew it.
    let token = client.token("csrf").await;
    for request in 1..REQUESTS_PER_CLIENT {
        let reply = if request % EDIT_EVERY == 0 {
            let text = format!("client {client_id} edit {request}");
            let reply = client
                .post_form(&[
                    ("action", "edit"),
                    ("title", &title),
                    ("text", &text),
                    ("token", &token),
                ])
                .await;
            if reply.json["edit"]["result"] == "Success" {
                edits += 1;
            }
            reply
        } else {
            client
                .get(&[
                    ("action", "query"),
                    ("meta", "userinfo"),
                    ("prop", "info"),
                    ("titles", &title),
                ])
                .await
        };
        let user_ok =
            request % EDIT_EVERY == 0 || reply.json["query"]["userinfo"]["name"] == "Admin";
        if reply.status != 200 || reply.error_header().is_some() || !user_ok {
            errors.push(format!(
                "client {client_id} request {request}: {} {}",
                reply.status, reply.body
            ));
        }
    }
    (edits, errors)
}
