//! Parsing `redis.url` into the deployment it names (one node, Sentinel, Cluster).
//!
//! Why it exists: the same parse validates the configuration (errors name `redis.url`) and
//! decides how [`super::RedisConn::connect`] connects, so the two can never disagree.
//!
//! What it must never do: connect, or accept a URL the `redis` crate would read differently.

/// What `redis.url` asks for. Parsed once for validation (`Config::validate`) and for connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One node: the URL as the `redis` crate reads it.
    Single(String),
    /// Sentinels (`redis://host:port` each), the master's name, and how to log in to the data
    /// nodes (database, user, password).
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        db: i64,
        username: Option<String>,
        password: Option<String>,
    },
    /// Seed nodes (`redis://host:port` each) and the login for every node.
    Cluster {
        nodes: Vec<String>,
        username: Option<String>,
        password: Option<String>,
    },
}

impl RedisTopology {
    /// Parses `redis.url`. The error says what is wrong; the caller names the key.
    pub fn parse(url: &str) -> Result<RedisTopology, String> {
        const FORMS: &str = "expected `redis://host:port[/db]`, `rediss://…`, \
             `redis+sentinel://host:port[,host:port…]/master_name[/db]` or \
             `redis+cluster://host:port[,host:port…]`";
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let m = split_multi(rest);
            let sentinels = hosts_to_urls(m.hosts, 26379)?;
            let mut parts = m.path.splitn(2, '/');
            let master = parts.next().unwrap_or_default().to_string();
            if master.is_empty() {
                return Err(
                    "a Sentinel URL needs the master name as its path: `redis+sentinel://host:26379/mymaster`"
                        .into(),
                );
            }
            let db = match parts.next().filter(|d| !d.is_empty()) {
                None => 0,
                Some(d) => d
                    .parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or_else(|| format!("`{d}` is not a database number"))?,
            };
            return Ok(RedisTopology::Sentinel {
                sentinels,
                master,
                db,
                username: m.username,
                password: m.password,
            });
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let m = split_multi(rest);
            if !m.path.is_empty() {
                return Err("a cluster has no databases: drop the path after the nodes".into());
            }
            return Ok(RedisTopology::Cluster {
                nodes: hosts_to_urls(m.hosts, 6379)?,
                username: m.username,
                password: m.password,
            });
        }
        if ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            redis::Client::open(url).map_err(|e| format!("{FORMS} ({e})"))?;
            return Ok(RedisTopology::Single(url.to_string()));
        }
        Err(FORMS.to_string())
    }
}

/// The parts of a multi-host URL after its scheme: `[user[:password]@]hosts[/path]`.
struct MultiHost<'a> {
    username: Option<String>,
    password: Option<String>,
    hosts: &'a str,
    path: &'a str,
}

fn split_multi(rest: &str) -> MultiHost<'_> {
    let (username, password, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => {
            let (u, p) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p.to_string())),
                None => (userinfo, None),
            };
            (Some(u.to_string()).filter(|u| !u.is_empty()), p, rest)
        }
        None => (None, None, rest),
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    MultiHost {
        username,
        password,
        hosts,
        path: path.trim_end_matches('/'),
    }
}

fn hosts_to_urls(hosts: &str, default_port: u16) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = match h.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("`{h}`: the port must be a number from 1 to 65535"))?,
            ),
            None => (h, default_port),
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("`{h}` is not a host:port"));
        }
        out.push(format!("redis://{host}:{port}"));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_topology() {
        assert_eq!(
            RedisTopology::parse("redis://127.0.0.1:6379/2").unwrap(),
            RedisTopology::Single("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            RedisTopology::parse("redis+sentinel://:pw@s1:26379,s2/jit/3").unwrap(),
            RedisTopology::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
                master: "jit".into(),
                db: 3,
                username: None,
                password: Some("pw".into()),
            }
        );
        assert_eq!(
            RedisTopology::parse("redis+cluster://a:7000,b:7001").unwrap(),
            RedisTopology::Cluster {
                nodes: vec!["redis://a:7000".into(), "redis://b:7001".into()],
                username: None,
                password: None,
            }
        );
    }

    #[test]
    fn refuses_malformed_urls() {
        for bad in [
            "http://x",
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1:notaport/jit",
            "redis+sentinel://s1:26379/jit/x",
            "redis+sentinel://,/jit",
            "redis+cluster://a:7000/0",
            "redis+cluster://a:0",
            "redis://",
        ] {
            assert!(RedisTopology::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
