//! A private `redis-server` on a free loopback port, killed on drop: for tests and benches that
//! must FLUSHALL or count every command Redis processes, which the shared Redis forbids.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateRedis {
    pub port: u16,
    pub url: String,
    child: Child,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        // Ask the OS for a free port, release it, and hand it to redis-server. Another process
        // could take it in between; retry a few times if the server does not come up.
        for _ in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "yes",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be on PATH for this test");
            let mut me = PrivateRedis {
                port,
                url: format!("redis://127.0.0.1:{port}"),
                child,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = me.child.try_wait() {
                    break; // exited: port taken
                }
                if let Ok(client) = redis::Client::open(me.url.as_str()) {
                    if let Ok(mut c) = client.get_connection() {
                        if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                            return me;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = me.child.kill();
        }
        panic!("could not start a private redis-server");
    }

    /// Commands this server has processed so far (INFO stats `total_commands_processed`; the
    /// INFO call itself counts as one).
    pub fn total_commands(&self) -> u64 {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut c = client.get_connection().unwrap();
        let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    pub fn flushall(&self) {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut c = client.get_connection().unwrap();
        redis::cmd("FLUSHALL").query::<()>(&mut c).unwrap();
    }

    /// Resident memory of the server process in KiB (Linux), for bench figures.
    pub fn rss_kib(&self) -> Option<u64> {
        let client = redis::Client::open(self.url.as_str()).ok()?;
        let mut c = client.get_connection().ok()?;
        let info: String = redis::cmd("INFO").arg("memory").query(&mut c).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory_rss:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|b| b / 1024)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
