//! A JetStream cluster of `nats-server`s for tests (see [`NatsCluster`]).

use super::*;

/// A JetStream cluster of `nats-server`s on loopback, owned by a test.
#[derive(Debug)]
pub struct NatsCluster {
    pub(super) nodes: Vec<Node>,
    options: NatsOptions,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts a 3-node JetStream cluster with default options.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(3, NatsOptions::default())
    }

    /// Starts an `n`-node JetStream cluster with `options`.
    pub fn start_with(n: usize, options: NatsOptions) -> anyhow::Result<Self> {
        check_binary()?;
        anyhow::ensure!(n >= 1, "a cluster needs at least one node");
        let mut last_err = None;
        for _ in 0..3 {
            let mut cluster = Self {
                nodes: Vec::with_capacity(n),
                options,
                _dir: temp_dir()?,
            };
            let base = cluster._dir.path().to_path_buf();
            let auth = if options.anonymous {
                None
            } else {
                Some(PlatformAuth::generate(&base)?)
            };
            let ports = (0..n)
                .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
                .collect::<anyhow::Result<Vec<(u16, u16, u16)>>>()?;
            let routes: Vec<u16> = ports.iter().map(|p| p.1).collect();
            let name = format!("pn_test_{}", ports[0].0);
            for (i, (port, route_port, http_port)) in ports.into_iter().enumerate() {
                let node_dir = base.join(format!("n{}", i + 1));
                std::fs::create_dir_all(&node_dir)?;
                cluster.nodes.push(Node {
                    child: None,
                    port,
                    cluster: Some(ClusterPorts {
                        name: name.clone(),
                        route_port,
                        http_port,
                        routes: routes.clone(),
                    }),
                    dir: node_dir,
                    auth: auth.clone(),
                });
            }
            match cluster.spawn_all_and_wait() {
                Ok(()) => {
                    register(cluster.url(), auth.clone());
                    for u in cluster.urls() {
                        register(u, auth.clone());
                    }
                    return Ok(cluster);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("the nats cluster did not start")))
    }

    /// Every node's client URL, comma-separated (what `JetStreamConfig::url` takes).
    pub fn url(&self) -> String {
        self.urls().join(",")
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// The platform's credentials (none for an anonymous cluster).
    pub fn auth(&self) -> Option<&PlatformAuth> {
        self.nodes.first().and_then(|n| n.auth.as_ref())
    }

    /// What the platform connects with.
    pub fn client_auth(&self) -> ClientAuth {
        client_auth(self.auth())
    }

    /// A log config for every node, replicas 3, with the platform's credentials.
    pub fn log_config(&self) -> JetStreamConfig {
        JetStreamConfig {
            auth: self.client_auth(),
            replicas: self.len().min(3),
            ..JetStreamConfig::new(self.url())
        }
    }

    /// `--nats <urls> --nats-creds <file>` for a powernode child process.
    pub fn nats_args(&self) -> Vec<String> {
        nats_args(self.url(), self.auth())
    }

    /// A NATS connection (to any node) as the platform's user.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        platform_client(&self.url(), self.auth()).await
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The options the nodes run with.
    pub fn options(&self) -> NatsOptions {
        self.options
    }

    /// Kills node `i` (0-based) and keeps its store.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.stop();
        }
    }

    /// Restarts node `i` on its ports with its store and waits until the
    /// cluster reports JetStream healthy on it.
    pub fn restart_node(&mut self, i: usize) -> anyhow::Result<()> {
        let options = self.options;
        let node = self
            .nodes
            .get_mut(i)
            .with_context(|| format!("no node {i}"))?;
        node.stop();
        node.spawn(options)?;
        if let Err(e) = node.wait(Node::healthy) {
            node.stop();
            return Err(node.with_log_tail(e));
        }
        Ok(())
    }

    fn spawn_all_and_wait(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.spawn(self.options)?;
        }
        for i in 0..self.nodes.len() {
            if let Err(e) = self.nodes[i].wait(Node::healthy) {
                let e = self.nodes[i].with_log_tail(e);
                for node in &mut self.nodes {
                    node.stop();
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}
