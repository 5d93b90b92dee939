//! A worker's flushes: snapshots of the engine state, written (in a transaction with the
//! offset they cover, or acknowledged and then committed) once everything produced before
//! them is acknowledged; background commits and transactions; fencing; the final flush of a
//! stop. The bookkeeping itself is `ledger.rs`.

use super::*;

impl<C: rdkafka::consumer::ConsumerContext + 'static> Worker<C> {
    /// Takes a snapshot of what changed, and writes the history it caused first; the
    /// snapshot is written once all earlier records are acked. `released`: the last flush
    /// before the partition is let go.
    pub(super) async fn start_flush(&mut self, released: bool) {
        self.last_flush = Instant::now();
        let prefix = state::key_prefix(&self.topic, self.partition);
        let resign = std::mem::take(&mut self.resign);
        if !resign.is_empty() {
            self.shared
                .metrics
                .state_resigned
                .inc_by(resign.len() as u64);
        }
        let mut records: Vec<StateWrite> = resign
            .into_iter()
            .map(|(key, value)| (format!("{prefix}{key}"), Some(value)))
            .collect();
        records.extend(
            std::mem::take(&mut self.forget)
                .into_iter()
                .map(|key| (format!("{prefix}{key}"), None)),
        );
        if let Some(partitions) = self.record_partitions.take() {
            let r = StateRecord::Topic(crate::score::TopicRecord {
                v: crate::score::STATE_VERSION,
                partitions,
            });
            let value = serde_json::to_vec(&r).unwrap_or_default();
            records.push((format!("{prefix}{}", r.key()), Some(value)));
        }
        records.extend(self.engine.take_changes().into_iter().map(|c| match c {
            StateChange::Put(r) => {
                let value = serde_json::to_vec(&r).unwrap_or_default();
                (format!("{prefix}{}", r.key()), Some(value))
            }
            StateChange::Deleted(key) => (format!("{prefix}{key}"), None),
        }));
        self.write_history(released).await;
        self.ledger.start_flush(records);
    }

    /// Notices a fence set by the consumer group: from then on nothing is written or
    /// committed for this partition.
    pub(super) fn check_fence(&mut self) -> bool {
        if !self.ledger.is_fenced() && self.fenced.load(Ordering::Acquire) {
            tracing::warn!(topic = %self.topic, partition = self.partition, "partition fenced: no more state writes or commits from this worker");
            self.ledger.fence();
        }
        self.ledger.is_fenced()
    }

    /// Moves the flush on when its acknowledgements are in; `sync` commits synchronously.
    pub(super) async fn progress_flush(&mut self, sync: bool) {
        if self.check_fence() {
            return;
        }
        loop {
            match self.ledger.step() {
                Step::Nothing => return,
                Step::Write(records) if self.txn.is_some() => {
                    // Written with the offset it covers in one transaction; the flush goes
                    // on when the transaction has ended (`finished`).
                    self.write_snapshot(records, sync).await;
                    return;
                }
                Step::Write(records) => {
                    let sp = self.state_partition();
                    let n = records.len() as u64;
                    let shared = self.shared.clone();
                    for (key, value) in &records {
                        let record = Record {
                            topic: &shared.kafka.state_topic,
                            partition: Some(sp),
                            key: key.as_bytes(),
                            payload: value.as_deref(),
                            headers: state::mac_headers(
                                shared.kafka.record_key.as_ref(),
                                &shared.kafka.state_topic,
                                key,
                                value.as_deref(),
                            ),
                        };
                        self.produce(Stream::State, record).await;
                    }
                    self.ledger.written();
                    self.shared.metrics.state_records.inc_by(n);
                }
                Step::Flushed(commit) => {
                    self.shared.metrics.state_flushes.inc();
                    match commit {
                        // Committed by the snapshot's own transaction.
                        Some(offset) if self.txn.is_some() => self.committed(offset, Ok(())),
                        Some(offset) => self.commit(offset, sync).await,
                        None => {}
                    }
                    return;
                }
            }
        }
    }

    pub(super) fn state_partition(&self) -> i32 {
        state::state_partition(&self.topic, self.partition, self.shared.state_partitions)
    }

    /// Writes a snapshot and commits the offset it covers in one transaction, in the
    /// background (or, with `sync`, waiting for it).
    pub(super) async fn write_snapshot(&mut self, records: Vec<StateWrite>, sync: bool) {
        let covers = self.ledger.writing_covers();
        if let Some(txn) = self.txn_job(records, covers) {
            self.run_blocking(move || Background::Snapshot(txn()), sync)
                .await;
        }
    }

    /// The transaction that writes `records` and commits `offset`, as blocking work that
    /// hands the records back with its outcome.
    fn txn_job(
        &self,
        records: Vec<StateWrite>,
        offset: Option<i64>,
    ) -> Option<impl FnOnce() -> (Vec<StateWrite>, Result<(), TxnError>) + Send + 'static> {
        let txn = self.txn.clone()?;
        // Asking for the group metadata is a synchronous call into librdkafka's main
        // thread: made in the blocking job, never on the worker's event loop.
        let consumer = self.consumer.clone();
        let state_topic = self.shared.kafka.state_topic.clone();
        let sp = self.state_partition();
        let topic = self.topic.clone();
        let partition = self.partition;
        Some(move || {
            let group = consumer.group_metadata();
            let result = txn.write(
                &state_topic,
                sp,
                &records,
                (&topic, partition),
                offset,
                group.as_ref(),
            );
            (records, result)
        })
    }

    /// Runs blocking work off the runtime, one at a time; its end comes to `finished`,
    /// at once with `sync`, otherwise through `background`.
    pub(super) async fn run_blocking(
        &mut self,
        job: impl FnOnce() -> Background + Send + 'static,
        sync: bool,
    ) {
        if sync {
            if let Ok(done) = self.runner.run(job).await {
                Box::pin(self.finished(done)).await;
            }
        } else {
            self.busy = true;
            let tx = self.background_tx.clone();
            drop(self.runner.run(move || {
                let _ = tx.send(job());
            }));
        }
    }

    /// Blocking work done in the background has ended.
    pub(super) async fn finished(&mut self, done: Background) {
        self.busy = false;
        match done {
            Background::Committed(offset, result) => self.committed(offset, result),
            Background::Snapshot((records, Ok(()))) => {
                self.ledger.written();
                self.shared
                    .metrics
                    .state_records
                    .inc_by(records.len() as u64);
                self.progress_flush(false).await;
            }
            Background::Snapshot((records, Err(TxnError::Retry(why)))) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %why, "state snapshot transaction aborted; writing it again");
                self.shared
                    .metrics
                    .produce_retries
                    .with_label_values(&[Stream::State.as_str()])
                    .inc();
                self.unwritten = Some((records, Instant::now() + RETRY_BACKOFF));
            }
            Background::Snapshot((_, Err(TxnError::Fenced(why)))) => self.fenced_by_owner(&why),
        }
    }

    /// The broker refused this worker's transaction: a newer owner holds the partition.
    pub(super) fn fenced_by_owner(&mut self, why: &str) {
        tracing::error!(topic = %self.topic, partition = self.partition, error = %why, "fenced by a newer owner of the partition: no more state writes or commits from this worker");
        self.shared
            .metrics
            .worker_failures
            .with_label_values(&["fenced"])
            .inc();
        self.ledger.fence();
    }

    /// Writes again a snapshot whose transaction was aborted, once its back-off has passed.
    pub(super) async fn write_unwritten(&mut self, sync: bool) {
        if self.busy || self.check_fence() {
            return;
        }
        if let Some((records, not_before)) = self.unwritten.take() {
            if not_before > Instant::now() && !sync {
                self.unwritten = Some((records, not_before));
                return;
            }
            self.write_snapshot(records, sync).await;
        }
    }

    /// Commits `offset`. It counts only when the broker confirms it: `sync` waits for the
    /// answer; otherwise the commit runs in the background and its answer comes back through
    /// `background` (librdkafka reports no result for an asynchronous manual commit to an
    /// event-based client, so a fire-and-forget commit could never be confirmed). While
    /// other background work is under way none is started: the next flush asks again. With
    /// transactional state the offset goes in a transaction of its own.
    pub(super) async fn commit(&mut self, offset: i64, sync: bool) {
        if self.check_fence() || (!sync && self.busy) {
            return;
        }
        if let Some(txn) = self.txn_job(Vec::new(), Some(offset)) {
            self.run_blocking(move || Background::Committed(offset, txn().1), sync)
                .await;
            return;
        }
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))
            .is_err()
        {
            return;
        }
        let consumer = self.consumer.clone();
        let job = move || {
            let result = consumer.commit(&tpl, CommitMode::Sync);
            Background::Committed(offset, result.map_err(|e| TxnError::Retry(e.to_string())))
        };
        self.run_blocking(job, sync).await;
    }

    /// The broker's answer to a commit.
    pub(super) fn committed(&mut self, offset: i64, result: Result<(), TxnError>) {
        match &result {
            Ok(()) => {}
            Err(TxnError::Retry(e)) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, offset, error = %e, "offset commit failed; the next flush commits again")
            }
            Err(TxnError::Fenced(why)) => self.fenced_by_owner(why),
        }
        self.ledger.commit_result(offset, result.is_ok());
        let label = if result.is_ok() { "ok" } else { "error" };
        self.shared
            .metrics
            .commits
            .with_label_values(&[label])
            .inc();
    }

    /// Drains deliveries, writes a last snapshot and commits synchronously, within the
    /// stop timeout.
    pub(super) async fn stop(&mut self) {
        let deadline = tokio::time::Instant::now() + self.shared.stop_timeout;
        // Let a flush already under way finish, then take the final one.
        let mut final_started = false;
        loop {
            if self.check_fence() {
                return;
            }
            if self.ledger.is_idle() {
                if final_started {
                    break;
                }
                self.engine.advance_to(wall_now(), &mut self.alerts);
                self.emit_alerts(None).await;
                self.start_flush(true).await;
                final_started = true;
                if self.ledger.is_idle() {
                    break;
                }
            }
            self.progress_flush(true).await;
            if self.ledger.is_idle() {
                continue;
            }
            tokio::select! {
                Some((seq, stream, d, _)) = self.pending.next(), if !self.pending.is_empty() => {
                    self.delivered(seq, stream, d).await;
                }
                _ = tokio::time::sleep(RETRY_BACKOFF), if !self.retries.is_empty() => {
                    self.retry_due().await;
                }
                Some(done) = self.background.recv(), if self.busy => self.finished(done).await,
                _ = tokio::time::sleep(RETRY_BACKOFF), if self.unwritten.is_some() => {
                    self.write_unwritten(true).await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::error!(topic = %self.topic, partition = self.partition, in_flight = self.ledger.in_flight(), "stop timed out before every record was acknowledged; the next owner reprocesses from the last committed offset");
                    self.ledger.fence();
                    return;
                }
            }
        }
        if let Some(offset) = self.ledger.final_commit() {
            self.commit(offset, true).await;
        }
        tracing::info!(topic = %self.topic, partition = self.partition, committed = ?self.ledger.committed(), "partition released");
    }
}
