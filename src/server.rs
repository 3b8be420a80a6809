//! The HTTP side: the accept loop with graceful shutdown (hyper-util's
//! `server_graceful` pattern) and the routes the proxy answers itself.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::access::Access;
use crate::config::ServerSettings;
use crate::error::{ProxyError, ResponseBody, full_body, json_response};
use crate::proxy::Proxy;
use crate::reload::Running;
use crate::session::login::WikiLogin;
use crate::session::{SessionManager, SessionStatus};
use crate::telemetry::Metrics;

/// A failing `accept` (out of file descriptors, say) is retried after this
/// pause rather than in a hot loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Everything a request may need.
#[derive(Debug)]
pub struct App {
    pub proxy: Proxy,
    pub sessions: Arc<SessionManager>,
    pub metrics: Arc<Metrics>,
    /// The wiki's own api.php path (e.g. `/w/api.php`), served besides `/api.php`.
    pub api_path: String,
    /// The login flow, whose credentials a reload may replace.
    pub login: Arc<WikiLogin>,
    pub running: Running,
    /// Replaced whole on reload (new tokens, addresses, names).
    pub access: RwLock<Arc<Access>>,
}

impl App {
    async fn route(&self, peer: IpAddr, request: Request<Incoming>) -> Response<ResponseBody> {
        // Requests are smuggled by sending both Content-Length and
        // Transfer-Encoding, so that a proxy and the server behind it frame
        // the body differently and one sees a second request the other took
        // for body. The HTTP parser frames by Transfer-Encoding alone (and
        // hides the Content-Length); RFC 9112 §6.1 then requires closing the
        // connection, so nothing sent after such a body is ever read as a
        // request. Chunked requests are rare for API clients; they only lose
        // keep-alive.
        let chunked = request.headers().contains_key(TRANSFER_ENCODING);
        let mut response = self.route_request(peer, request).await;
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
        request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        // Orchestrators probe these without credentials; they reveal no
        // secret.
        match request.uri().path() {
            "/healthz" => return text_response(StatusCode::OK, "ok\n"),
            "/readyz" => return self.readiness(),
            _ => {}
        }
        let access = self
            .access
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match request.uri().path() {
            "/metrics" if access.metrics_are_public() => self.metrics_response(),
            path if path == "/metrics" || path == "/api.php" || path == self.api_path => {
                if let Err(denied) = access.check(peer, request.headers()) {
                    tracing::info!(%peer, reason = %denied, "request refused");
                    return ProxyError::from(denied).into_response();
                }
                if path == "/metrics" {
                    self.metrics_response()
                } else {
                    self.proxy.handle(request).await
                }
            }
            _ => ProxyError::UnknownPath(self.served_paths()).into_response(),
        }
    }

    fn served_paths(&self) -> String {
        if self.api_path == "/api.php" {
            "/api.php".to_owned()
        } else {
            format!("/api.php and {}", self.api_path)
        }
    }

    fn readiness(&self) -> Response<ResponseBody> {
        let (status, body) = match self.sessions.status() {
            SessionStatus::Ready(session) => {
                let since = time::OffsetDateTime::from(session.logged_in_since)
                    .format(&Rfc3339)
                    .unwrap_or_default();
                (
                    StatusCode::OK,
                    serde_json::json!({ "user": session.user, "logged_in_since": since }),
                )
            }
            SessionStatus::LoggingIn => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "reason": "logging in" }),
            ),
            SessionStatus::NotReady { reason } => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "reason": reason }),
            ),
        };
        json_response(status, body.to_string())
    }

    fn metrics_response(&self) -> Response<ResponseBody> {
        let (logged_in, age) = match self.sessions.status() {
            SessionStatus::Ready(session) => (
                1,
                session
                    .logged_in_since
                    .elapsed()
                    .map_or(0.0, |age| age.as_secs_f64()),
            ),
            SessionStatus::LoggingIn | SessionStatus::NotReady { .. } => (0, 0.0),
        };
        self.metrics.logged_in.set(logged_in);
        self.metrics.session_age.set(age);
        let mut response = text_response(StatusCode::OK, self.metrics.render());
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
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

/// Serves until `shutdown` resolves, then stops accepting and gives
/// in-flight requests up to `limits.shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
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
                    Box::pin(async move { Ok::<_, Infallible>(app.route(peer.ip(), request).await) })
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
