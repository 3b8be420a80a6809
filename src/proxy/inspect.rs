//! Checking the parameters of a multipart body too large to hold, while it
//! streams to the wiki. Its bytes go on as they arrive and a copy feeds a
//! multipart reader that keeps only the non-file fields (a few KiB of each).
//! The last chunk is held back until every field has been read: a refused
//! request then ends with an error instead, so the wiki never receives a
//! whole request and never runs it (PHP reads the entire body before a
//! script starts).

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use tokio::sync::{mpsc, oneshot};

use super::guard::{self, Refusal};
use super::policy;
use crate::config::PolicySettings;
use crate::error::BoxError;
use crate::mediawiki::params::{self, Params};

/// The most of one field's value kept for the check: guarded values are
/// short, and a longer value cannot equal one of them.
const MAX_FIELD_BYTES: usize = 4096;
/// Chunks in flight between the forwarded stream and the reader; this bounds
/// the memory of an inspected upload.
const CHANNEL_CHUNKS: usize = 8;

/// Why an inspected upload was stopped.
#[derive(Debug)]
pub(super) enum Stopped {
    Refused(Refusal),
    Denied(policy::Denied),
    Malformed(String),
}

/// Wraps `chunks` (a multipart body) so it is checked as it streams. The
/// receiver gets a value only if the request was stopped.
pub(super) fn inspected<S>(
    chunks: S,
    boundary: String,
    query_params: Params,
    headers: HeaderMap,
    policy: PolicySettings,
) -> (
    impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
    oneshot::Receiver<Stopped>,
)
where
    S: Stream<Item = Result<Bytes, BoxError>> + Send + Unpin + 'static,
{
    let (copies, received) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let reader = tokio::spawn(read_fields(
        received,
        boundary,
        query_params,
        headers,
        policy,
    ));
    let (stopped_tx, stopped_rx) = oneshot::channel();
    let state = State {
        chunks,
        copies: Some(copies),
        reader: Some(reader),
        held: None,
        stopped: Some(stopped_tx),
        done: false,
    };
    (futures_util::stream::unfold(state, State::next), stopped_rx)
}

struct State<S> {
    chunks: S,
    copies: Option<mpsc::Sender<Bytes>>,
    reader: Option<tokio::task::JoinHandle<Result<(), Stopped>>>,
    /// The latest chunk, not yet sent on.
    held: Option<Bytes>,
    stopped: Option<oneshot::Sender<Stopped>>,
    done: bool,
}

impl<S> State<S>
where
    S: Stream<Item = Result<Bytes, BoxError>> + Unpin,
{
    async fn next(mut self) -> Option<(Result<Bytes, BoxError>, Self)> {
        loop {
            if self.done {
                return None;
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => {
                    if let Some(copies) = &self.copies {
                        // A reader that stopped early reports why at the end.
                        let _ = copies.send(chunk.clone()).await;
                    }
                    if let Some(previous) = self.held.replace(chunk) {
                        return Some((Ok(previous), self));
                    }
                }
                Some(Err(err)) => {
                    self.done = true;
                    return Some((Err(err), self));
                }
                None => {
                    self.done = true;
                    self.copies = None;
                    let verdict = match self.reader.take() {
                        Some(reader) => reader.await.unwrap_or_else(|err| {
                            Err(Stopped::Malformed(format!("inspection failed: {err}")))
                        }),
                        None => Ok(()),
                    };
                    return match verdict {
                        Ok(()) => self.held.take().map(|last| (Ok(last), self)),
                        Err(stopped) => {
                            if let Some(report) = self.stopped.take() {
                                let _ = report.send(stopped);
                            }
                            let err: BoxError = "request stopped by the proxy".into();
                            Some((Err(err), self))
                        }
                    };
                }
            }
        }
    }
}

async fn read_fields(
    received: mpsc::Receiver<Bytes>,
    boundary: String,
    mut params: Params,
    headers: HeaderMap,
    policy: PolicySettings,
) -> Result<(), Stopped> {
    let stream = futures_util::stream::unfold(received, |mut received| async move {
        received
            .recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), received))
    });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let malformed = |err: multer::Error| Stopped::Malformed(err.to_string());
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        // `None`: a file part, not a parameter.
        let name = params::part_name(field.headers())
            .map_err(|err| Stopped::Malformed(err.to_string()))?;
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            let room = MAX_FIELD_BYTES.saturating_sub(value.len());
            if name.is_some() && room > 0 {
                value.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
        if let Some(name) = name {
            params.push(&name, &String::from_utf8_lossy(&value));
        }
    }
    if let Some(refusal) = guard::check(&params, &headers) {
        return Err(Stopped::Refused(refusal));
    }
    match policy::check(&policy, &params) {
        Some(denied) => Err(Stopped::Denied(denied)),
        None => Ok(()),
    }
}
