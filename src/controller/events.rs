//! Kubernetes Events of AiApps, published off the reconcile path: a reconcile logs and
//! queues its Event and goes on; a few background senders create them. The queue is bounded, so
//! neither a slow apiserver nor a burst of AiApps can hold reconciles or grow memory; an
//! Event that finds it full is dropped and counted, as client-go's broadcaster does.
//!
//! kube's `Recorder` is not used: it keeps every Event of the last minutes and, on each
//! publish, scans them all under one write lock, which serialised reconciles and grew
//! with the number of AiApps. Our Events mark phase changes, which do not repeat, so
//! series aggregation buys nothing here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compact_str::CompactString;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::crd::AiApp;
use crate::metrics::Metrics;
use crate::transition::Note;

/// Events waiting to be sent; past this, new ones are dropped.
pub const QUEUE: usize = 8192;

/// Events sent at once.
const SENDERS: usize = 2;

/// Bound on one Event create, so a hung apiserver cannot stall the queue for ever.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Who reports the Events.
#[derive(Clone, Debug)]
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

/// An Event waiting in the queue: only what differs between Events, the short words
/// inline, so that a full queue costs little memory (about 200 bytes an Event, where the
/// AiApp's `ObjectReference` and the `Note` took about 600); the sender makes the whole
/// Event.
#[derive(Debug)]
struct Queued {
    name: CompactString,
    namespace: CompactString,
    uid: CompactString,
    warning: bool,
    reason: CompactString,
    text: String,
    at: Timestamp,
}

/// Queues Events for the background senders.
pub struct EventSink {
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    sending: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    /// Events queued or being sent.
    pending: Arc<AtomicUsize>,
}

impl EventSink {
    /// Starts the senders; they run until [`EventSink::close`].
    pub fn start(client: Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        let (queue, queued) = mpsc::channel(QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        let sending = tokio::spawn(send_all(
            client,
            Arc::new(reporter),
            queued,
            metrics.clone(),
            pending.clone(),
        ));
        Self {
            queue: Mutex::new(Some(queue)),
            sending: Mutex::new(Some(sending)),
            metrics,
            pending,
        }
    }

    /// Logs an Event about `app` and queues it; never waits. The log line keeps what
    /// happened once the Event has expired (an hour), and also when the queue was full.
    pub fn publish(&self, app: &AiApp, note: &Note) {
        let aiapp = ObjectRef::from_obj(app);
        if note.warning {
            warn!(%aiapp, reason = %note.reason, "{}", note.text);
        } else {
            info!(%aiapp, reason = %note.reason, "{}", note.text);
        }
        let meta = &app.metadata;
        let event = Queued {
            name: meta.name.as_deref().unwrap_or_default().into(),
            namespace: meta.namespace.as_deref().unwrap_or_default().into(),
            uid: meta.uid.as_deref().unwrap_or_default().into(),
            warning: note.warning,
            reason: note.reason.as_str().into(),
            text: note.text.clone(),
            at: Timestamp::now(),
        };
        let queue = self.queue.lock().expect("not poisoned");
        let Some(queue) = queue.as_ref() else {
            return;
        };
        // Counted before it is queued, so a sender never counts it down first.
        self.pending.fetch_add(1, Ordering::Relaxed);
        let sent = queue.try_send(event);
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
        self.metrics
            .set_events_queued(self.pending.load(Ordering::Relaxed));
        if let Err(mpsc::error::TrySendError::Full(event)) = sent {
            self.metrics.event_dropped();
            debug!(
                aiapp = %app.name_any(),
                reason = %event.reason,
                "the Event queue is full; Event dropped"
            );
        }
    }

    /// Stops taking Events and waits up to `bound` for the queued ones to be sent.
    pub async fn close(&self, bound: Duration) {
        self.queue.lock().expect("not poisoned").take();
        let sending = self.sending.lock().expect("not poisoned").take();
        if let Some(sending) = sending
            && tokio::time::timeout(bound, sending).await.is_err()
        {
            warn!(?bound, "queued Events were not all sent before shutdown");
        }
    }
}

/// The whole Event for a queued one.
fn event(reporter: &Reporter, queued: Queued) -> Event {
    let Queued {
        name,
        namespace,
        uid,
        warning,
        reason,
        text,
        at,
    } = queued;
    let optional = |word: CompactString| (!word.is_empty()).then(|| word.into_string());
    let regarding = ObjectReference {
        api_version: Some(AiApp::api_version(&()).into_owned()),
        kind: Some(AiApp::kind(&()).into_owned()),
        name: optional(name.clone()),
        namespace: optional(namespace),
        uid: optional(uid),
        ..ObjectReference::default()
    };
    Event {
        metadata: ObjectMeta {
            // Unique without a read: the AiApp's name and the time in nanoseconds, as
            // kubectl and client-go name theirs, plus a random tail for two Events of one
            // AiApp in the same nanosecond.
            name: Some(format!(
                "{name}.{:x}{:04x}",
                at.as_nanosecond(),
                fastrand::u16(..)
            )),
            namespace: regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        action: Some("Reconcile".to_owned()),
        reason: Some(reason.into_string()),
        note: Some(text),
        type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
        event_time: Some(MicroTime(at)),
        regarding: Some(regarding),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..Event::default()
    }
}

async fn send_all(
    client: Client,
    reporter: Arc<Reporter>,
    queued: mpsc::Receiver<Queued>,
    metrics: Arc<Metrics>,
    pending: Arc<AtomicUsize>,
) {
    futures::stream::unfold(queued, |mut queued| async {
        queued.recv().await.map(|event| (event, queued))
    })
    .for_each_concurrent(SENDERS, |queued| {
        let client = client.clone();
        let metrics = metrics.clone();
        let pending = pending.clone();
        let event = event(&reporter, queued);
        async move {
            let namespace = event.metadata.namespace.clone().unwrap_or_default();
            let events: Api<Event> = Api::namespaced(client, &namespace);
            match tokio::time::timeout(SEND_TIMEOUT, events.create(&PostParams::default(), &event))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    metrics.event_failed();
                    warn!(%error, reason = event.reason.as_deref().unwrap_or_default(), "could not publish an Event");
                }
                Err(_) => {
                    metrics.event_failed();
                    warn!(reason = event.reason.as_deref().unwrap_or_default(), "publishing an Event timed out");
                }
            }
            let left = pending.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
            metrics.set_events_queued(left);
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AiAppSpec;

    fn sink_without_senders() -> (EventSink, mpsc::Receiver<Queued>) {
        let (queue, queued) = mpsc::channel(2);
        let sink = EventSink {
            queue: Mutex::new(Some(queue)),
            sending: Mutex::new(None),
            metrics: Metrics::new(),
            pending: Arc::default(),
        };
        (sink, queued)
    }

    fn aiapp() -> AiApp {
        let spec: AiAppSpec = serde_json::from_value(serde_json::json!({
            "aiWorkspaceId": "ws", "docker": {"image": "i", "command": "c"},
        }))
        .unwrap();
        let mut app = AiApp::new("train", spec);
        app.metadata.namespace = Some("ml".into());
        app.metadata.uid = Some("uid-1".into());
        app
    }

    #[tokio::test]
    async fn an_event_names_the_aiapp_the_reason_and_the_reporter() {
        let (sink, mut queued) = sink_without_senders();
        sink.publish(&aiapp(), &Note::warning("KillSkipped", "no id"));
        let reporter = Reporter {
            controller: "dataforest-operator".into(),
            instance: "pod-0".into(),
        };
        let event = event(&reporter, queued.recv().await.unwrap());
        let name = event.metadata.name.as_deref().unwrap();
        assert!(name.starts_with("train."), "{name}");
        assert_eq!(event.metadata.namespace.as_deref(), Some("ml"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reason.as_deref(), Some("KillSkipped"));
        assert_eq!(event.note.as_deref(), Some("no id"));
        let regarding = event.regarding.unwrap();
        assert_eq!(regarding.uid.as_deref(), Some("uid-1"));
        assert_eq!(regarding.kind.as_deref(), Some("AiApp"));
        assert_eq!(
            event.reporting_instance.as_deref(),
            Some("pod-0"),
            "the instance is the pod"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (sink, mut queued) = sink_without_senders();
        for _ in 0..5 {
            sink.publish(&aiapp(), &Note::normal("Submitted", "app 1"));
        }
        assert!(queued.recv().await.is_some());
        assert!(queued.recv().await.is_some());
        assert!(queued.try_recv().is_err(), "only the queue's two were kept");
        assert!(
            sink.metrics
                .encode()
                .contains("dataforest_operator_events_dropped_total 3"),
            "{}",
            sink.metrics.encode()
        );
    }

    #[tokio::test]
    async fn after_close_events_are_ignored() {
        let (sink, mut queued) = sink_without_senders();
        sink.close(Duration::from_millis(10)).await;
        sink.publish(&aiapp(), &Note::normal("Submitted", "app 1"));
        assert!(queued.recv().await.is_none());
    }
}
