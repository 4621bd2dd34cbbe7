//! A loopback TCP proxy in front of kube-apiserver that can hold the apiserver's answers.
//!
//! TLS passes through untouched (the serving certificate covers 127.0.0.1, so a client
//! pointed at `https://127.0.0.1:<proxy port>` verifies it as usual). Requests always
//! flow to the apiserver; while [`ApiProxy::hold_responses`] is in force, every byte the
//! apiserver sends back is buffered instead of delivered, so a write lands but its
//! answer does not arrive, until [`ApiProxy::release`].
//!
//! Holding is per byte, not per request: a connection opened while holding cannot even
//! finish its TLS handshake, so only requests on connections opened before the hold
//! reach the apiserver. kube's client speaks HTTP/1.1 and reuses idle connections, so
//! make a request through the proxy before holding when a write must land. (A client
//! may also open a spare connection next to the one it reuses; it just stalls until
//! the release.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The proxy; it stops (closing every connection through it) when dropped.
pub struct ApiProxy {
    address: SocketAddr,
    hold: watch::Sender<bool>,
    counters: Arc<Counters>,
    accepting: JoinHandle<()>,
    kubeconfigs: Mutex<Vec<PathBuf>>,
}

#[derive(Default)]
struct Counters {
    /// Bytes from the apiserver buffered and not yet delivered.
    held: AtomicUsize,
    /// Client connections accepted so far.
    connections: AtomicUsize,
}

#[allow(dead_code)]
impl ApiProxy {
    /// Listens on a free loopback port and forwards every connection to `server_url`
    /// (`https://127.0.0.1:<port>`, as [`crate::fixture::TestContext::server_url`] gives).
    pub async fn start(server_url: &str) -> Result<ApiProxy> {
        let uri: http::Uri = server_url.parse().context("parsing the apiserver's URL")?;
        let authority = uri
            .authority()
            .with_context(|| format!("{server_url} names no host and port"))?;
        let upstream: SocketAddr = authority
            .as_str()
            .parse()
            .with_context(|| format!("{server_url} is not an IP address and port"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (hold, holding) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let accepting = tokio::spawn(accept(listener, upstream, holding, counters.clone()));
        Ok(ApiProxy {
            address,
            hold,
            counters,
            accepting,
            kubeconfigs: Mutex::new(Vec::new()),
        })
    }

    /// `https://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// From now on, bytes from the apiserver are buffered and not delivered; requests
    /// still reach it.
    pub fn hold_responses(&self) {
        self.hold.send_replace(true);
    }

    /// Stops holding: each connection delivers what it buffered, in order, then goes on
    /// as usual. Returns at once; the bytes reach the clients moments later.
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// Bytes from the apiserver buffered and not yet released: above 0 once an answer to
    /// a request sent while holding has come back, 0 again once released.
    pub fn held_bytes(&self) -> usize {
        self.counters.held.load(Ordering::SeqCst)
    }

    /// Client connections the proxy has accepted so far.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Writes a copy of the kubeconfig at `original` (beside it) whose clusters point at
    /// the proxy, and returns its path; the copy is deleted when the proxy is dropped.
    pub fn kubeconfig(&self, original: &Path) -> Result<PathBuf> {
        let text = std::fs::read_to_string(original)
            .with_context(|| format!("reading {}", original.display()))?;
        let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
        let clusters = config
            .get_mut("clusters")
            .and_then(serde_yaml_ng::Value::as_sequence_mut)
            .with_context(|| format!("{} has no clusters", original.display()))?;
        for cluster in clusters {
            let cluster = cluster
                .get_mut("cluster")
                .and_then(serde_yaml_ng::Value::as_mapping_mut)
                .with_context(|| format!("a cluster in {} has no settings", original.display()))?;
            cluster.insert("server".into(), self.url().into());
        }
        let path = original.with_file_name(format!("kubeconfig-via-proxy-{}", self.address.port()));
        std::fs::write(&path, serde_yaml_ng::to_string(&config)?)
            .with_context(|| format!("writing {}", path.display()))?;
        self.kubeconfigs
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(path.clone());
        Ok(path)
    }

    /// A kube client that goes through the proxy, from a copy of `original`.
    pub async fn client(&self, original: &Path) -> Result<kube::Client> {
        crate::fixture::client_for(&self.kubeconfig(original)?).await
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        // The accepting task owns every connection's task: aborting it ends them all.
        self.accepting.abort();
        let kubeconfigs = self
            .kubeconfigs
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner());
        for path in kubeconfigs.drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    holding: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(forward(client, upstream, holding.clone(), counters.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Pipes one client connection to a new apiserver connection and back.
async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    holding: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    // Unreachable apiserver (stopped): the client's connection closes, as a refused
    // connection would.
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        let _ = to_server.shutdown().await;
    };
    let responses = responses(&mut from_server, &mut to_client, holding, &counters);
    let _ = tokio::join!(requests, responses);
}

/// Copies the apiserver's bytes to the client, buffering them while holding.
async fn responses(
    from_server: &mut OwnedReadHalf,
    to_client: &mut OwnedWriteHalf,
    mut holding: watch::Receiver<bool>,
    counters: &Counters,
) -> std::io::Result<()> {
    let mut buffer = vec![0_u8; 64 * 1024];
    let mut held = Held {
        bytes: Vec::new(),
        counter: &counters.held,
    };
    let mut ended = false;
    loop {
        let hold = *holding.borrow_and_update();
        if !hold && !held.bytes.is_empty() {
            to_client.write_all(&held.take()).await?;
        }
        if ended && !hold {
            // Everything is delivered: pass the apiserver's end on.
            return to_client.shutdown().await;
        }
        tokio::select! {
            read = from_server.read(&mut buffer), if !ended => {
                // A reset (the apiserver killed) ends the stream like a close.
                let n = read.unwrap_or(0);
                if n == 0 {
                    ended = true;
                } else if *holding.borrow() || !held.bytes.is_empty() {
                    // Behind bytes still held (a release not yet seen): keep the order.
                    held.push(&buffer[..n]);
                } else {
                    to_client.write_all(&buffer[..n]).await?;
                }
            }
            changed = holding.changed() => {
                if changed.is_err() {
                    // The proxy is gone.
                    return Ok(());
                }
            }
        }
    }
}

/// One connection's held bytes, kept in [`Counters::held`] as long as they are held.
struct Held<'a> {
    bytes: Vec<u8>,
    counter: &'a AtomicUsize,
}

impl Held<'_> {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.counter.fetch_add(bytes.len(), Ordering::SeqCst);
    }

    /// Takes the bytes to deliver them; they no longer count as held from here on, so a
    /// client that has read them never finds them still counted.
    fn take(&mut self) -> Vec<u8> {
        let bytes = std::mem::take(&mut self.bytes);
        self.counter.fetch_sub(bytes.len(), Ordering::SeqCst);
        bytes
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes.len(), Ordering::SeqCst);
    }
}
