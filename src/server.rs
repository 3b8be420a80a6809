//! The HTTP side: the accept loop with graceful shutdown (hyper-util's
//! `server_graceful` pattern) and the routes the proxy answers itself.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;

use crate::error::{ProxyError, ResponseBody, full_body, json_response};
use crate::proxy::Proxy;
use crate::reload::Running;
use crate::session::login::BotPasswordLogin;
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
    pub login: Arc<BotPasswordLogin>,
    pub running: Running,
}

impl App {
    async fn route(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        match request.uri().path() {
            "/healthz" => text_response(StatusCode::OK, "ok\n"),
            "/readyz" => self.readiness(),
            "/metrics" => self.metrics_response(),
            path if path == "/api.php" || path == self.api_path => self.proxy.handle(request).await,
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
/// in-flight requests up to `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
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
                    async move { Ok::<_, Infallible>(app.route(request).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "client connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => {
                tracing::info!("shutting down: no new connections");
                break;
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests finished"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still running at the shutdown deadline");
        }
    }
}
