//! Real `redis-server` processes for the high-availability tests: a primary with a replica and a
//! sentinel, or a three-node cluster. Each binds a free loopback port, is polled until it
//! answers, and is killed (SIGKILL) on drop, with its files in a temporary directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut c).is_ok()
}

impl Server {
    /// `redis-server` with `args` after the common ones (`--sentinel` first for a sentinel,
    /// whose config file must be writable: it rewrites it).
    fn start(dir: &Path, name: &str, config: &str, args: &[&str]) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let file = dir.join(format!("{name}.conf"));
            std::fs::write(
                &file,
                format!(
                    "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\n\
                     dir {}\n{config}\n",
                    dir.display()
                ),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&file)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be on PATH for this test");
            let mut s = Server {
                port,
                child: Some(child),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(Ok(Some(_))) = s.child.as_mut().map(|c| c.try_wait()) {
                    break; // exited: the port was taken
                }
                if ping(port) {
                    return s;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            s.kill();
        }
        panic!("could not start redis-server {name}");
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cmd<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        let mut c = client.get_connection().unwrap();
        cmd.query(&mut c).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary, one replica of it, and one sentinel watching them as `master` (quorum 1, down
/// after 1 s, so a killed primary is replaced in a few seconds).
pub struct SentinelSet {
    pub primary: Server,
    pub replica: Server,
    pub sentinel: Server,
    pub master: String,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    pub fn start(master: &str) -> SentinelSet {
        let dir = tempfile::tempdir().unwrap();
        let primary = Server::start(dir.path(), "primary", "", &[]);
        let replica = Server::start(
            dir.path(),
            "replica",
            &format!("replicaof 127.0.0.1 {}", primary.port),
            &[],
        );
        // The replica must be in sync before the sentinel can promote it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info: String = replica.cmd(redis::cmd("INFO").arg("replication"));
            if info.contains("master_link_status:up") {
                break;
            }
            assert!(Instant::now() < deadline, "replica never synced");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sentinel = Server::start(
            dir.path(),
            "sentinel",
            &format!(
                "sentinel monitor {master} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {master} 1000\n\
                 sentinel failover-timeout {master} 10000\n\
                 sentinel parallel-syncs {master} 1",
                primary.port
            ),
            &["--sentinel"],
        );
        SentinelSet {
            primary,
            replica,
            sentinel,
            master: master.to_string(),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{}",
            self.sentinel.port, self.master
        )
    }

    /// The port of the node the sentinel currently names as primary.
    pub fn primary_port(&self) -> u16 {
        let addr: Vec<String> = self.sentinel.cmd(
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.master),
        );
        addr[1].parse().unwrap()
    }
}

/// Three cluster nodes holding all 16384 slots between them (no replicas).
pub struct Cluster {
    pub nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Server> = (0..3)
            .map(|i| {
                Server::start(
                    dir.path(),
                    &format!("node{i}"),
                    &format!(
                        "cluster-enabled yes\ncluster-config-file nodes-{i}.conf\n\
                         cluster-node-timeout 2000"
                    ),
                    &[],
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be on PATH for this test");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &nodes {
            loop {
                let info: String = n.cmd(redis::cmd("CLUSTER").arg("INFO"));
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Cluster { nodes, _dir: dir }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}
