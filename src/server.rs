//! The HTTP side: the accept loop with graceful shutdown (hyper-util's
//! `server_graceful` pattern) and the routes the proxy answers itself.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::access::Access;
use crate::config::{ServerSettings, Settings};
use crate::error::{ProxyError, ResponseBody, full_body, json_response};
use crate::reload::Running;
use crate::site::{Entry, Site};
use crate::telemetry::Metrics;

/// A failing `accept` (out of file descriptors, say) is retried after this
/// pause rather than in a hot loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Everything a request may need.
#[derive(Debug)]
pub struct App {
    /// Each wiki, the longest path prefix first, so that the most specific
    /// one answers a path.
    pub sites: Vec<Arc<Site>>,
    /// The file used `[[wikis]]`: `/readyz` and `/metrics` name each wiki.
    named_sites: bool,
    pub running: Running,
    /// Replaced whole on reload (new tokens, addresses, names).
    pub access: RwLock<Arc<Access>>,
}

impl App {
    pub fn new(mut sites: Vec<Arc<Site>>, settings: &Settings) -> Self {
        sites.sort_by_key(|site| std::cmp::Reverse(site.path_prefix.len()));
        Self {
            sites,
            named_sites: settings.named_sites,
            running: Running::new(settings.clone()),
            access: RwLock::new(Arc::new(Access::new(
                settings.access.clone(),
                settings.listen_addresses(),
            ))),
        }
    }

    /// The wiki named `name`.
    pub fn site(&self, name: &str) -> Option<&Arc<Site>> {
        self.sites.iter().find(|site| site.name == name)
    }

    /// The wikis served on a listen address of their own (`Some`), or on
    /// `server.listen` (`None`).
    fn sites_at(&self, own_address: Option<SocketAddr>) -> impl Iterator<Item = &Arc<Site>> {
        self.sites
            .iter()
            .filter(move |site| site.listen == own_address)
    }

    async fn route(
        &self,
        peer: IpAddr,
        own_address: Option<SocketAddr>,
        request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        // Requests are smuggled by sending both Content-Length and
        // Transfer-Encoding, so that a proxy and the server behind it frame
        // the body differently and one sees a second request the other took
        // for body. The HTTP parser frames by Transfer-Encoding alone (and
        // hides the Content-Length); RFC 9112 §6.1 then requires closing the
        // connection, so nothing sent after such a body is ever read as a
        // request. Chunked requests are rare for API clients; they only lose
        // keep-alive.
        let chunked = request.headers().contains_key(TRANSFER_ENCODING);
        let mut response = self.route_request(peer, own_address, request).await;
        if chunked {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    async fn route_request(
        &self,
        peer: IpAddr,
        own_address: Option<SocketAddr>,
        request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let path = request.uri().path();
        // Orchestrators probe these without credentials; they reveal no
        // secret.
        match path {
            "/healthz" => return text_response(StatusCode::OK, "ok\n"),
            "/readyz" => return self.readiness(own_address),
            _ => {}
        }
        let found = self
            .sites_at(own_address)
            .find_map(|site| Some((site, site.entry(path)?)));
        if let Some((site, Entry::Readiness)) = &found {
            return site_readiness(site);
        }
        let access = self
            .access
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let is_metrics = path == "/metrics";
        if is_metrics && access.metrics_are_public() {
            return self.metrics_response();
        }
        if !is_metrics && found.is_none() {
            return ProxyError::UnknownPath(self.served_paths(own_address)).into_response();
        }
        if let Err(denied) = access.check(peer, request.headers()) {
            tracing::info!(%peer, reason = %denied, "request refused");
            return ProxyError::from(denied).into_response();
        }
        match found {
            None => self.metrics_response(),
            Some((site, Entry::Api)) => {
                site.proxy
                    .handle(request)
                    .instrument(site.span.clone())
                    .await
            }
            Some((site, Entry::Page { script, path_info })) => {
                site.proxy
                    .handle_page(request, script, &path_info)
                    .instrument(site.span.clone())
                    .await
            }
            Some((site, Entry::Readiness)) => site_readiness(site),
        }
    }

    fn served_paths(&self, own_address: Option<SocketAddr>) -> String {
        let paths: Vec<&str> = self
            .sites_at(own_address)
            .flat_map(|site| site.served_paths())
            .collect();
        paths.join(", ")
    }

    /// Ready when every wiki served here is; with `[[wikis]]`, each wiki's
    /// state is named.
    fn readiness(&self, own_address: Option<SocketAddr>) -> Response<ResponseBody> {
        // The main address answers for every wiki: it is what a container's
        // health check asks.
        let sites: Vec<&Arc<Site>> = match own_address {
            None => self.sites.iter().collect(),
            Some(_) => self.sites_at(own_address).collect(),
        };
        let ready = sites.iter().all(|site| site.is_ready());
        let body = match (self.named_sites, sites.as_slice()) {
            (false, [site]) => site.readiness(),
            _ => {
                let wikis: serde_json::Map<String, serde_json::Value> = sites
                    .iter()
                    .map(|site| {
                        let mut state = site.readiness();
                        state["ready"] = site.is_ready().into();
                        (site.name.clone(), state)
                    })
                    .collect();
                serde_json::json!({ "ready": ready, "wikis": wikis })
            }
        };
        json_response(readiness_status(ready), body.to_string())
    }

    fn metrics_response(&self) -> Response<ResponseBody> {
        for site in &self.sites {
            site.update_session_gauges();
        }
        let text = if self.named_sites {
            let labelled: Vec<(&str, &Metrics)> = self
                .sites
                .iter()
                .map(|site| (site.name.as_str(), &*site.metrics))
                .collect();
            crate::telemetry::render_labelled(&labelled)
        } else {
            self.sites
                .first()
                .map(|site| site.metrics.render())
                .unwrap_or_default()
        };
        let mut response = text_response(StatusCode::OK, text);
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }
}

/// `{prefix}/readyz`: one wiki's state.
fn site_readiness(site: &Site) -> Response<ResponseBody> {
    json_response(
        readiness_status(site.is_ready()),
        site.readiness().to_string(),
    )
}

fn readiness_status(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn text_response(status: StatusCode, text: impl Into<bytes::Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(full_body(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves the wikis of `server.listen` until `shutdown` resolves, then
/// stops accepting and gives in-flight requests up to
/// `limits.shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    limits: &ServerSettings,
) {
    serve_address(listener, None, app, shutdown, limits).await;
}

/// Like [`serve`], for the wikis given `own_address` as their own listen
/// address (`None`: those of `server.listen`). Each address has its own
/// connection limit.
pub async fn serve_address(
    listener: TcpListener,
    own_address: Option<SocketAddr>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    limits: &ServerSettings,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slow clients get this long to send their headers; it also closes
        // idle keep-alive connections.
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers);
    let graceful = GracefulShutdown::new();
    // Connections beyond the limit wait in the listen backlog.
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => {
                tracing::info!("shutting down: no new connections");
                break;
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                // Small API answers should not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    // Boxed: the connection then holds a pointer, not the
                    // whole request pipeline's state, while it idles
                    // (about 15 KB less per kept-alive connection).
                    Box::pin(async move {
                        Ok::<_, Infallible>(app.route(peer.ip(), own_address, request).await)
                    })
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "client connection ended with an error");
                    }
                    drop(permit);
                });
            }
            () = &mut shutdown => {
                tracing::info!("shutting down: no new connections");
                break;
            }
        }
    }
    drop(listener);
    let grace = limits.shutdown_grace;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests finished"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still running at the shutdown deadline");
        }
    }
}
