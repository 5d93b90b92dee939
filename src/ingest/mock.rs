//! librdkafka's in-process mock cluster, for the demo (no broker to install) and for fault
//! injection in tests.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// A running mock cluster; it stops when dropped. Not `Send`: keep it on the thread that
/// created it (the demo's main thread).
pub struct MockBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl MockBroker {
    pub fn start(brokers: i32) -> anyhow::Result<MockBroker> {
        Ok(MockBroker {
            cluster: MockCluster::new(brokers)?,
        })
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        self.cluster.create_topic(name, partitions, 1)?;
        Ok(())
    }
}
