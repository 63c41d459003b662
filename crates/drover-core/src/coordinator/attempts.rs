//! What workers report about their attempts: started, finished, output. A report counts only
//! if it names the current attempt with its lease and comes from the worker holding it
//! (FENCED_ATTEMPTS); otherwise it changes nothing and the worker is told so.

use super::io::{Effects, Outcome, SessionId, ToWorker, Write};
use super::{ms, Coordinator};
use crate::model::{AttemptOutcome, AttemptRef, LogChunk, LogStream, Micros, TaskState};
use crate::retry;

impl Coordinator {
    /// Whether `r` is the current attempt of its task, leased to the worker of `session`.
    fn owns(&self, session: SessionId, r: &AttemptRef) -> bool {
        let Some(name) = self.workers.name_of(session) else {
            return false;
        };
        self.tasks
            .get(&r.task_id)
            .is_some_and(|t| t.is_leased_to(r, name))
    }

    pub(super) fn started(
        &mut self,
        now: Micros,
        session: SessionId,
        r: AttemptRef,
        fx: &mut Effects,
    ) {
        if !self.owns(session, &r) {
            fx.stale_rejected += 1;
            fx.sends.push((session, ToWorker::Cancel(r)));
            return;
        }
        let t = self.tasks.expect_mut(&r.task_id);
        t.lease_expires = Some(now + ms(self.cfg.lease_ms));
        if t.rec.state != TaskState::Assigned {
            return;
        }
        t.rec.started_at = Some(now);
        let t = self.tasks.set_state(&r.task_id, TaskState::Running, now);
        if let Some(a) = t.attempt.as_mut() {
            a.started_at = Some(now);
            fx.writes.push(Write::Attempt((**a).clone()));
        }
        let ev = t.event(None);
        self.write_task(r.task_id, false, fx);
        self.emit(now, ev, fx);
    }

    pub(super) fn finished(
        &mut self,
        now: Micros,
        session: SessionId,
        r: AttemptRef,
        o: Outcome,
        fx: &mut Effects,
    ) {
        if let Some(w) = self.workers.by_session_mut(session) {
            if w.held.get(&r.task_id) == Some(&r.attempt) {
                w.held.remove(&r.task_id);
            }
        }
        if !self.owns(session, &r) {
            fx.stale_rejected += 1;
            let reason = "stale lease: the attempt was reclaimed, cancelled or is unknown".into();
            fx.sends
                .push((session, ToWorker::Reject { attempt: r, reason }));
            return;
        }
        let id = r.task_id;
        let t = self.tasks.expect_mut(&id);
        if let (Some(w), Some(a)) = (t.rec.worker.as_deref(), t.attempt.as_ref()) {
            let ran = a.started_at.map(|s| now - s);
            self.placer.learn(w, &t.rec.def.kind, ran, o.kind);
        }
        t.rec.started_at.get_or_insert(now);
        let attempt_no = t.rec.attempt;
        if let Some(a) = t.attempt.as_mut() {
            a.started_at.get_or_insert(now);
            a.finished_at = Some(now);
            a.outcome = Some(o.kind);
            a.exit_code = o.exit_code;
            a.error = o.error.clone();
            fx.writes.push(Write::Attempt((**a).clone()));
        }
        let retries_left = attempt_no < t.rec.def.max_attempts;
        let terminal = match o.kind {
            AttemptOutcome::Succeeded => {
                t.rec.result = o.result;
                TaskState::Succeeded
            }
            AttemptOutcome::Failed | AttemptOutcome::TimedOut if retries_left => {
                let backoff = t.rec.def.backoff_ms;
                let delay =
                    retry::backoff_ms(backoff, attempt_no, self.cfg.backoff_cap_ms, &mut self.rng);
                t.rec.exit_code = o.exit_code;
                t.rec.error = o.error;
                let why = format!(
                    "attempt {attempt_no} {}; retry in {delay}ms",
                    o.kind.as_str()
                );
                self.retry_later(now, id, delay, why, fx);
                return;
            }
            AttemptOutcome::Failed => TaskState::Failed,
            AttemptOutcome::TimedOut => TaskState::TimedOut,
            // The worker gave the attempt back (shutting down): run it elsewhere.
            AttemptOutcome::Cancelled | AttemptOutcome::Lost => {
                self.requeue(now, id, "released by worker", fx);
                return;
            }
        };
        self.finish(now, id, terminal, o.exit_code, o.error, fx);
    }

    pub(super) fn log(
        &mut self,
        session: SessionId,
        r: AttemptRef,
        stream: LogStream,
        mut data: Vec<u8>,
        fx: &mut Effects,
    ) {
        if !self.owns(session, &r) {
            return;
        }
        if stream == LogStream::Stdout {
            self.deps.note_output(r.task_id, &data);
        }
        let max = self.cfg.max_log_bytes;
        let kept = self.tasks.expect_mut(&r.task_id).log_kept.of(stream);
        if *kept > max || data.is_empty() {
            return;
        }
        let room = max - *kept;
        if data.len() > room {
            data.truncate(room);
            let marker = format!(
                "\n[drover: {} truncated after {max} bytes]\n",
                stream.as_str()
            );
            data.extend_from_slice(marker.as_bytes());
            *kept = max + 1;
        } else {
            *kept += data.len();
        }
        fx.writes.push(Write::Log(LogChunk {
            task_id: r.task_id,
            attempt: r.attempt,
            stream,
            data,
        }));
    }
}
