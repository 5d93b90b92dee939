//! A real Apache Kafka for the tests: `scripts/kafka.sh` starts one KRaft node (or a
//! three-node cluster for the fault tests) on free loopback ports, from the Maven Central
//! artifacts that `.ci/run` (or `scripts/kafka.sh fetch`) puts in the cache.
//!
//! Nothing falls back: without Java 17+ or the artifacts, starting a broker fails with the
//! script's message, which says what to run. Every node is stopped when its [`Broker`] is
//! dropped, and also when the test process dies (the script's `--watch`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// A running broker or cluster, stopped on drop.
pub struct Broker {
    dir: PathBuf,
    bootstrap: String,
    /// The SASL_SSL listeners, when started with [`Options::sasl_ssl`].
    pub sasl_bootstrap: Option<String>,
    /// A number unique to this broker in the test run (names temporary directories).
    pub port: u16,
    nodes: usize,
}

/// How to start a broker.
#[derive(Default)]
pub struct Options {
    pub nodes: usize,
    /// A directory with `broker.key` and `broker.crt` (PEM): adds SASL_SSL listeners.
    pub sasl_ssl: Option<PathBuf>,
    /// `(user, password)` SCRAM-SHA-512 credentials created at format time.
    pub scram: Vec<(String, String)>,
    /// Extra broker properties, `key=value`.
    pub props: Vec<String>,
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh")
}

impl Broker {
    /// One combined controller+broker node.
    pub fn start() -> Broker {
        Broker::start_with(Options {
            nodes: 1,
            ..Options::default()
        })
    }

    /// `nodes` combined controller+broker nodes forming one cluster.
    pub fn cluster(nodes: usize) -> Broker {
        Broker::start_with(Options {
            nodes,
            ..Options::default()
        })
    }

    pub fn start_with(o: Options) -> Broker {
        let dir = tempdir("kafka");
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg("start")
            .arg("--dir")
            .arg(&dir)
            .args(["--nodes", &o.nodes.max(1).to_string()])
            .args(["--watch", &std::process::id().to_string()]);
        if let Some(tls) = &o.sasl_ssl {
            cmd.arg("--sasl-ssl").arg(tls);
        }
        for (user, password) in &o.scram {
            cmd.args(["--scram", &format!("{user}={password}")]);
        }
        for p in &o.props {
            cmd.args(["--prop", p]);
        }
        let out = cmd.output().expect("bash runs scripts/kafka.sh");
        assert!(
            out.status.success(),
            "the test broker did not start (scripts/kafka.sh start):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|s| s.trim().to_string())
        };
        let bootstrap = read("bootstrap").expect("kafka.sh wrote the bootstrap list");
        let port = read("node-1/port")
            .and_then(|p| p.parse().ok())
            .expect("node 1's port");
        Broker {
            sasl_bootstrap: read("bootstrap-sasl"),
            dir,
            bootstrap,
            port,
            nodes: o.nodes.max(1),
        }
    }

    /// The PLAINTEXT listeners, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// SIGKILLs node `node` (1-based).
    pub fn kill(&self, node: usize) {
        self.script(&["kill", &node.to_string()]);
    }

    /// Starts a killed node again on its storage and ports, and waits until it has started.
    pub fn restart(&self, node: usize) {
        self.script(&["restart", &node.to_string()]);
    }

    /// SIGKILLs every node (the whole cluster down).
    pub fn kill_all(&self) {
        for n in 1..=self.nodes {
            self.kill(n);
        }
    }

    /// Starts every node again (they need each other for a quorum, so all are launched
    /// before any is waited for).
    pub fn restart_all(&self) {
        let handles: Vec<_> = (1..=self.nodes)
            .map(|n| {
                let dir = self.dir.clone();
                std::thread::spawn(move || {
                    let out = Command::new("bash")
                        .arg(script())
                        .args(["restart"])
                        .arg(&dir)
                        .arg(n.to_string())
                        .output()
                        .expect("bash runs scripts/kafka.sh");
                    assert!(
                        out.status.success(),
                        "kafka.sh restart {n}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                })
            })
            .collect();
        for h in handles {
            h.join().expect("node restarted");
        }
    }

    /// The node id leading `topic`/`partition` now.
    pub fn leader(&self, topic: &str, partition: i32) -> usize {
        let consumer: rdkafka::consumer::BaseConsumer =
            self.config().create().expect("metadata client");
        use rdkafka::consumer::Consumer;
        for _ in 0..100 {
            if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                let leader = md
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions())
                    .find(|p| p.id() == partition)
                    .map(|p| p.leader());
                if let Some(l) = leader.filter(|l| *l > 0) {
                    return l as usize;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no leader for {topic}/{partition}");
    }

    /// How many replicas `topic`/`partition` has.
    pub fn replicas(&self, topic: &str, partition: i32) -> usize {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::BaseConsumer =
            self.config().create().expect("metadata client");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        md.topics()
            .iter()
            .flat_map(|t| t.partitions())
            .find(|p| p.id() == partition)
            .map(|p| p.replicas().len())
            .unwrap_or(0)
    }

    fn script(&self, args: &[&str]) {
        let (verb, rest) = args.split_first().expect("a verb");
        let out = Command::new("bash")
            .arg(script())
            .arg(verb)
            .arg(&self.dir)
            .args(rest)
            .output()
            .expect("bash runs scripts/kafka.sh");
        assert!(
            out.status.success(),
            "kafka.sh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A client configuration for the PLAINTEXT listeners.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    /// Creates `name` with `partitions` partitions (replication 1).
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, 1, &[]);
    }

    /// Creates a topic with a replication factor and topic configs, and waits until every
    /// partition has a leader.
    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        replication: i32,
        configs: &[(&str, &str)],
    ) {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().expect("admin client");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        // The admin client's futures are driven by its own thread: any executor will do.
        let results = std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(admin.create_topics([&topic], &opts))
            })
            .join()
            .expect("create_topics thread")
        })
        .expect("create_topics request");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("topic {t} not created: {e}"));
        }
        for p in 0..partitions {
            self.leader(name, p);
        }
    }

    pub fn producer(&self) -> FutureProducer {
        self.config()
            .set("linger.ms", "5")
            .create()
            .expect("test producer")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// A fresh, empty directory under the system temp dir (not created: the caller does).
pub fn tempdir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "regwatch-test-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Produces `(key, value)` pairs in order and waits for every delivery.
pub async fn produce(producer: &FutureProducer, topic: &str, events: &[(String, Vec<u8>)]) {
    for (key, value) in events {
        let record = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .headers(OwnedHeaders::new());
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("event delivered");
    }
    let _ = producer.flush(Duration::from_secs(10));
}
