//! A TCP proxy in front of a real service, so a test can make Redis or PostgreSQL disappear
//! and come back without stopping the shared service.

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// `host:port` of a URL, resolved to a socket address (loopback services only).
pub fn url_addr(url: &str) -> std::net::SocketAddr {
    let u = url::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        u.host_str().unwrap(),
        u.port_or_known_default().unwrap()
    )
    .parse()
    .unwrap()
}

/// The same URL with its port replaced: to route a client through a [`TcpProxy`].
pub fn with_port(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyMode {
    Open,
    /// Bytes from clients are read (and counted) but held back until the mode changes.
    Stalled,
    /// The listener is closed and every live connection dropped: the dependency is gone.
    Cut,
}

/// A TCP proxy on 127.0.0.1 in front of a real service (Redis, PostgreSQL), so a test can make
/// that dependency disappear and come back without stopping the shared service.
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    mode: tokio::sync::watch::Sender<ProxyMode>,
    /// Bytes received from clients so far.
    pub seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> TcpProxy {
        let listener = bind_reuse("127.0.0.1:0".parse().unwrap());
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = tokio::sync::watch::channel(ProxyMode::Open);
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(proxy_loop(listener, addr, upstream, rx, seen.clone()));
        TcpProxy {
            addr,
            mode,
            seen,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn cut(&self) {
        self.mode.send_replace(ProxyMode::Cut);
    }

    pub fn restore(&self) {
        self.mode.send_replace(ProxyMode::Open);
    }

    pub fn stall(&self) {
        self.mode.send_replace(ProxyMode::Stalled);
    }

    pub fn seen(&self) -> u64 {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bind_reuse(addr: std::net::SocketAddr) -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // The port is re-bound after a cut while the dropped connections sit in TIME_WAIT.
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(1024).unwrap()
}

async fn proxy_loop(
    listener: TcpListener,
    addr: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    mut mode: tokio::sync::watch::Receiver<ProxyMode>,
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let mut listener = Some(listener);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let current = *mode.borrow_and_update();
        if current == ProxyMode::Cut {
            listener = None;
            conns.abort_all();
            while conns.join_next().await.is_some() {}
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => listener.insert(bind_reuse(addr)),
        };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((client, _)) = accepted {
                    conns.spawn(pipe(client, upstream, mode.clone(), seen.clone()));
                }
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(_) = conns.join_next() => {}
        }
    }
}

async fn pipe(
    client: tokio::net::TcpStream,
    upstream: std::net::SocketAddr,
    mut mode: tokio::sync::watch::Receiver<ProxyMode>,
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            seen.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
            if mode.wait_for(|m| *m == ProxyMode::Open).await.is_err() {
                return;
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = tokio::io::copy(&mut sr, &mut cw);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
