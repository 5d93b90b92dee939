//! Keys and kinds of the history topic's records. Every key is unique to what its record
//! says, so the topic's compaction keeps each report and each alert once (a redelivery has
//! the same key), and only the latest view of an incident and watermark of a partition.
//! Parts are joined by U+001F (unit separator), which no id of the contract contains.

/// The header naming a record's kind.
pub const KIND_HEADER: &str = "regwatch.history";
pub const REPORT: &str = "report";
pub const VIEW: &str = "view";
pub const ALERT: &str = "alert";
pub const WATERMARK: &str = "watermark";
pub const ACTION: &str = "action";

const SEP: char = '\u{1f}';

/// The history partition of everything about `participant` (or of a watermark, by its
/// key): one partition keeps a participant's story in the order it was written.
pub fn partition_of(participant: &str, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in participant.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % partitions.max(1) as u32) as i32
}

pub fn report(participant: &str, incident: &str, event_id: &str) -> String {
    format!("i{SEP}{participant}{SEP}{incident}{SEP}r{SEP}{event_id}")
}

pub fn view(participant: &str, incident: &str) -> String {
    format!("i{SEP}{participant}{SEP}{incident}{SEP}v")
}

/// An incident's alert or reminder, or (without an incident) a telemetry-gap alert.
pub fn alert(participant: &str, incident: Option<&str>, alert_id: &str) -> String {
    match incident {
        Some(i) => format!("i{SEP}{participant}{SEP}{i}{SEP}a{SEP}{alert_id}"),
        None => format!("g{SEP}{participant}{SEP}{alert_id}"),
    }
}

/// A person's action on an incident, applied or refused by its owner.
pub fn action(participant: &str, incident: &str, action_id: &str) -> String {
    format!("i{SEP}{participant}{SEP}{incident}{SEP}x{SEP}{action_id}")
}

/// A person's action on a participant (a silence), applied or refused by one of the
/// partitions it went to: the same key from each, so compaction keeps one.
pub fn participant_action(participant: &str, action_id: &str) -> String {
    format!("g{SEP}{participant}{SEP}x{SEP}{action_id}")
}

pub fn watermark(topic: &str, partition: i32) -> String {
    format!("w{SEP}{topic}{SEP}{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_what_they_say() {
        let all = [
            report("P", "I", "e1"),
            report("P", "I", "e2"),
            view("P", "I"),
            view("P", "I2"),
            alert("P", Some("I"), "a1"),
            alert("P", None, "a1"),
            action("P", "I", "a1"),
            participant_action("P", "a1"),
            watermark("t", 0),
            watermark("t", 1),
        ];
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        assert_eq!(report("P", "I", "e1"), report("P", "I", "e1"));
    }
}
