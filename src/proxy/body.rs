//! Client request bodies: kept in memory up to a limit so the request can
//! be replayed after a re-login, streamed through beyond it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::inspect::{self, Stopped};
use crate::config::PolicySettings;
use crate::error::BoxError;
use crate::mediawiki::params::Params;

#[derive(Debug)]
pub(super) enum RequestBody {
    /// The whole body, replayable as often as needed.
    Buffered(Bytes),
    /// What was read before the limit was passed, then the rest, unread.
    /// It can be sent once.
    Streaming {
        prefix: Bytes,
        rest: Incoming,
        /// The client's declared length, passed on so the wiki need not
        /// accept a chunked upload.
        length: Option<u64>,
        limit: BodyLimit,
    },
    /// A streaming body made ready to send (wrapped for inspection).
    Prepared {
        body: reqwest::Body,
        length: Option<u64>,
    },
    /// A streaming body that has been sent already.
    Spent,
}

impl RequestBody {
    /// Reads up to `limit` bytes. A body declared larger than the limit is
    /// not read at all here.
    pub(super) async fn read(
        mut body: Incoming,
        limit: usize,
        max: BodyLimit,
    ) -> Result<Self, hyper::Error> {
        let length = body.size_hint().exact();
        if length.is_some_and(|length| length > limit as u64) {
            return Ok(RequestBody::Streaming {
                prefix: Bytes::new(),
                rest: body,
                length,
                limit: max,
            });
        }
        let mut buffer = BytesMut::new();
        while let Some(frame) = body.frame().await {
            // Trailers have no meaning for api.php; only data is kept.
            if let Ok(data) = frame?.into_data() {
                buffer.extend_from_slice(&data);
                if buffer.len() > limit {
                    return Ok(RequestBody::Streaming {
                        prefix: buffer.freeze(),
                        rest: body,
                        length,
                        limit: max,
                    });
                }
            }
        }
        Ok(RequestBody::Buffered(buffer.freeze()))
    }

    pub(super) fn is_replayable(&self) -> bool {
        matches!(self, RequestBody::Buffered(_))
    }

    pub(super) fn buffered(&self) -> Option<&Bytes> {
        match self {
            RequestBody::Buffered(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Wraps a streaming multipart body so its fields are checked on the
    /// way through; the receiver reports a stopped request.
    pub(super) fn inspect(
        &mut self,
        boundary: String,
        params: Params,
        headers: HeaderMap,
        policy: PolicySettings,
    ) -> Option<oneshot::Receiver<Stopped>> {
        let RequestBody::Streaming {
            prefix,
            rest,
            length,
            limit,
        } = std::mem::replace(self, RequestBody::Spent)
        else {
            return None;
        };
        let (stream, stopped) = inspect::inspected(
            client_stream(prefix, rest, limit).boxed(),
            boundary,
            params,
            headers,
            policy,
        );
        *self = RequestBody::Prepared {
            body: reqwest::Body::wrap_stream(stream),
            length,
        };
        Some(stopped)
    }

    /// The body for one upstream request and its length if known; a
    /// streaming body is handed over and cannot be sent again.
    pub(super) fn take_for_upstream(&mut self) -> (reqwest::Body, Option<u64>) {
        match std::mem::replace(self, RequestBody::Spent) {
            RequestBody::Buffered(bytes) => {
                let length = bytes.len() as u64;
                *self = RequestBody::Buffered(bytes.clone());
                (reqwest::Body::from(bytes), Some(length))
            }
            RequestBody::Streaming {
                prefix,
                rest,
                length,
                limit,
            } => (
                reqwest::Body::wrap_stream(client_stream(prefix, rest, limit)),
                length,
            ),
            RequestBody::Prepared { body, length } => (body, length),
            RequestBody::Spent => (reqwest::Body::from(Bytes::new()), Some(0)),
        }
    }
}

/// `server.max_body_bytes` for a body of unknown length: the stream ends
/// with an error past it, and the flag tells the proxy why.
#[derive(Debug, Clone)]
pub(super) struct BodyLimit {
    pub(super) max: u64,
    pub(super) exceeded: Arc<AtomicBool>,
}

/// What was read before the replay limit, then the rest as it arrives,
/// cut off past `server.max_body_bytes`.
fn client_stream(
    prefix: Bytes,
    rest: Incoming,
    limit: BodyLimit,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    let mut total = 0u64;
    futures_util::stream::once(async move { Ok(prefix) })
        .chain(
            rest.into_data_stream()
                .map(|chunk| chunk.map_err(BoxError::from)),
        )
        .map(move |chunk| {
            let chunk = chunk?;
            total += chunk.len() as u64;
            if total > limit.max {
                limit.exceeded.store(true, Ordering::SeqCst);
                return Err(BoxError::from("request body over server.max_body_bytes"));
            }
            Ok(chunk)
        })
}
