//! What the worker has to tell the server and has not sent yet, in the order it happened.
//!
//! Everything that happens between two sends goes out as one `Updates` message, so the number of
//! messages follows the number of sends, not the number of tasks. A message is cut at
//! [`MAX_ITEMS`] entries or about [`MAX_BYTES`] bytes (the server's decoder has a size limit);
//! the cut is always a prefix of the history, so an attempt's `Started` and its logs never go
//! out after its `Finished` (the server applies started, then logs, then finished).

use std::collections::VecDeque;

use drover_api::proto::{AttemptRef, Finished, LogChunk, Started, Updates};

/// Most entries in one `Updates` message.
pub(crate) const MAX_ITEMS: usize = 8192;
/// About the most bytes in one `Updates` message (always at least one entry).
pub(crate) const MAX_BYTES: usize = 1 << 20;
/// Consecutive output of one stream of one attempt is merged into chunks up to this size.
const MERGE_UP_TO: usize = 64 << 10;

#[derive(Debug)]
enum Item {
    Started(AttemptRef),
    Log(LogChunk),
    Finished(Finished),
}

impl Item {
    /// A cheap upper-ish estimate of the encoded size.
    fn size(&self) -> usize {
        let a = |r: &AttemptRef| r.task_id.len() + r.lease.len() + 16;
        match self {
            Item::Started(r) => a(r),
            Item::Log(l) => l.attempt.as_ref().map_or(0, a) + l.data.len() + 8,
            Item::Finished(f) => {
                f.attempt.as_ref().map_or(0, a)
                    + f.error.as_ref().map_or(0, |e| e.len())
                    + f.result.as_ref().map_or(0, |r| r.len())
                    + 16
            }
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    items: VecDeque<Item>,
}

impl Outbox {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn started(&mut self, attempt: AttemptRef) {
        self.items.push_back(Item::Started(attempt));
    }

    pub(crate) fn log(&mut self, attempt: &AttemptRef, stream: u32, mut data: Vec<u8>) {
        if let Some(Item::Log(last)) = self.items.back_mut() {
            if last.stream == stream
                && last.data.len() + data.len() <= MERGE_UP_TO
                && last.attempt.as_ref() == Some(attempt)
            {
                last.data.append(&mut data);
                return;
            }
        }
        self.items.push_back(Item::Log(LogChunk {
            attempt: Some(attempt.clone()),
            stream,
            data,
        }));
    }

    pub(crate) fn finished(&mut self, finished: Finished) {
        self.items.push_back(Item::Finished(finished));
    }

    /// Attempts whose `Finished` has not been sent: the worker still holds them.
    pub(crate) fn unreported(&self) -> impl Iterator<Item = &AttemptRef> {
        self.items.iter().filter_map(|i| match i {
            Item::Finished(f) => f.attempt.as_ref(),
            _ => None,
        })
    }

    /// Takes the oldest entries, up to one message's worth.
    pub(crate) fn take_message(&mut self) -> Updates {
        let mut u = Updates::default();
        let mut bytes = 0;
        let mut count = 0;
        while let Some(item) = self.items.front() {
            let size = item.size();
            if count > 0 && (count == MAX_ITEMS || bytes + size > MAX_BYTES) {
                break;
            }
            bytes += size;
            count += 1;
            match self.items.pop_front() {
                Some(Item::Started(a)) => u.started.push(Started { attempt: Some(a) }),
                Some(Item::Log(l)) => u.logs.push(l),
                Some(Item::Finished(f)) => u.finished.push(f),
                None => break,
            }
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aref(n: u32) -> AttemptRef {
        AttemptRef {
            task_id: format!("t{n}"),
            attempt: 1,
            lease: "00".into(),
        }
    }

    fn fin(n: u32) -> Finished {
        Finished {
            attempt: Some(aref(n)),
            outcome: 1,
            exit_code: Some(0),
            error: None,
            result: None,
        }
    }

    #[test]
    fn everything_pending_goes_in_one_message() {
        let mut o = Outbox::default();
        for n in 0..1000 {
            o.started(aref(n));
            o.finished(fin(n));
        }
        let u = o.take_message();
        assert_eq!((u.started.len(), u.finished.len()), (1000, 1000));
        assert!(o.is_empty());
    }

    #[test]
    fn consecutive_output_is_merged_per_attempt_and_stream() {
        let mut o = Outbox::default();
        o.log(&aref(1), 1, b"a".to_vec());
        o.log(&aref(1), 1, b"b".to_vec());
        o.log(&aref(1), 2, b"c".to_vec());
        o.log(&aref(2), 2, b"d".to_vec());
        o.log(&aref(2), 2, b"e".to_vec());
        let u = o.take_message();
        let got: Vec<(String, u32, Vec<u8>)> = u
            .logs
            .into_iter()
            .map(|l| (l.attempt.unwrap().task_id, l.stream, l.data))
            .collect();
        assert_eq!(
            got,
            vec![
                ("t1".into(), 1, b"ab".to_vec()),
                ("t1".into(), 2, b"c".to_vec()),
                ("t2".into(), 2, b"de".to_vec()),
            ]
        );
    }

    #[test]
    fn big_output_is_split_into_bounded_messages_in_order() {
        let mut o = Outbox::default();
        o.started(aref(1));
        for _ in 0..40 {
            o.log(&aref(1), 1, vec![b'x'; MERGE_UP_TO]);
        }
        o.finished(fin(1));
        let mut messages = Vec::new();
        while !o.is_empty() {
            messages.push(o.take_message());
        }
        assert!(messages.len() >= 3, "{} messages", messages.len());
        let total: usize = messages
            .iter()
            .flat_map(|m| &m.logs)
            .map(|l| l.data.len())
            .sum();
        assert_eq!(total, 40 * MERGE_UP_TO);
        for m in &messages {
            let size: usize = m.logs.iter().map(|l| l.data.len()).sum();
            assert!(size <= MAX_BYTES);
        }
        assert_eq!(messages[0].started.len(), 1);
        let last = messages.last().unwrap();
        assert_eq!(last.finished.len(), 1);
        assert!(messages[..messages.len() - 1]
            .iter()
            .all(|m| m.finished.is_empty()));
    }

    #[test]
    fn unreported_lists_pending_finishes() {
        let mut o = Outbox::default();
        o.started(aref(1));
        o.finished(fin(2));
        let got: Vec<_> = o.unreported().map(|a| a.task_id.clone()).collect();
        assert_eq!(got, vec!["t2".to_string()]);
    }
}
