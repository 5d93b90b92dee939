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

    /// Fails the next `n` produce requests with a retriable error (fault injection).
    pub fn fail_next_produces(&self, n: usize) {
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
        let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; n];
        self.cluster.request_errors(RDKafkaApiKey::Produce, &errors);
    }

    /// Takes broker `id` down or brings it back (fault injection).
    pub fn set_broker_up(&self, id: i32, up: bool) -> anyhow::Result<()> {
        if up {
            self.cluster.broker_up(id)?;
        } else {
            self.cluster.broker_down(id)?;
        }
        Ok(())
    }
}
