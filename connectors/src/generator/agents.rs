//! The AI-agent orchestrator: sessions in which a manager agent plans, a
//! few worker agents code, test and document in iterations, quality gates
//! judge each iteration, and failed tasks are retried.
//!
//! Events go to the orchestrator's topics with the fields of
//! `queries/20_agent_events.sql`: `session.events` (by session),
//! `agent.tasks.manager` and `agent.tasks.worker` (by correlation id),
//! `quality.gates` (by session) and `monitoring.events` (by agent).

use serde_json::json;

use super::{Event, Rng, Scenario, Timeline};

const SESSIONS: &str = "session.events";
const MANAGER_TASKS: &str = "agent.tasks.manager";
const WORKER_TASKS: &str = "agent.tasks.worker";
const GATES: &str = "quality.gates";
const MONITORING: &str = "monitoring.events";

const PROJECTS: &[&str] = &[
    "checkout-service",
    "match-engine",
    "robot-orchestrator",
    "billing-api",
    "web-frontend",
    "search-indexer",
    "auth-gateway",
    "analytics-etl",
];
const MANAGER_MODELS: &[&str] = &["claude-opus-4", "gpt-4.1"];
const WORKER_MODELS: &[&str] = &["claude-sonnet-4", "gpt-4o-mini", "claude-haiku-4"];

/// Worker roles: name, median duration (ms), failure chance.
const WORKER_ROLES: &[(&str, f64, f64)] = &[
    ("coder", 45_000.0, 0.12),
    ("tester", 25_000.0, 0.15),
    ("writer", 12_000.0, 0.05),
];

/// Gates: name, chance to pass, median score when passing.
const GATE_KINDS: &[(&str, f64)] = &[
    ("lint", 0.93),
    ("unit-tests", 0.80),
    ("security", 0.90),
    ("review", 0.75),
];

/// Attempts per task before the session gives up on it.
const MAX_ATTEMPTS: i64 = 3;
const MAX_ITERATIONS: i64 = 3;
/// Mean events a session produces, to turn an event rate into a session
/// start rate.
const MEAN_EVENTS_PER_SESSION: f64 = 60.0;
const HEARTBEAT_MS: i64 = 15_000;

/// The agents scenario.
pub struct Agents {
    rng: Rng,
    timeline: Timeline,
    next_session_at: f64,
    interval_ms: f64,
    sessions: u64,
    tasks: u64,
}

/// Builds one session's events.
struct Session<'a> {
    rng: &'a mut Rng,
    tasks: &'a mut u64,
    id: String,
    events: Vec<Event>,
    manager: String,
    manager_model: &'static str,
    worker_model: &'static str,
    /// Per agent: (first, last) time it was busy, for its heartbeats.
    busy: Vec<(String, &'static str, i64, i64)>,
}

impl Session<'_> {
    fn emit(&mut self, topic: &'static str, key: String, t: i64, value: serde_json::Value) {
        self.events.push(Event {
            topic,
            key,
            value,
            timestamp: t,
        });
    }

    fn state(&mut self, t: i64, state: &str, iteration: i64) {
        let id = self.id.clone();
        self.emit(
            SESSIONS,
            id,
            t,
            json!({"event_type": "WORKFLOW_STATE_UPDATED", "event_ts": t,
                   "workflow_state": state, "iteration": iteration}),
        );
    }

    /// Runs a task with retries; returns when it ended and whether it
    /// finally succeeded.
    fn task(
        &mut self,
        start: i64,
        role: &'static str,
        agent: &str,
        median_ms: f64,
        fail: f64,
    ) -> (i64, bool) {
        *self.tasks += 1;
        let task_id = format!("t-{:07}", self.tasks);
        let (topic, model) = if role == "planner" || role == "reviewer" {
            (MANAGER_TASKS, self.manager_model)
        } else {
            (WORKER_TASKS, self.worker_model)
        };
        let mut t = start;
        for attempt in 1..=MAX_ATTEMPTS {
            let correlation = format!("{task_id}-a{attempt}");
            t += self.rng.range(50, 400);
            let assigned = t;
            let session = self.id.clone();
            self.emit(
                topic,
                correlation.clone(),
                t,
                json!({"event_type": "TASK_ASSIGNED", "event_ts": t, "session_id": session,
                       "task_id": task_id, "attempt": attempt, "agent_role": role,
                       "agent_id": agent, "model": model}),
            );
            let duration = self.rng.log_normal(median_ms, 0.5).max(500.0) as i64;
            t += duration;
            let tokens = (duration / 20).max(50) + self.rng.range(0, 400);
            let failed = self.rng.chance(fail);
            let (kind, error) = if failed {
                let error =
                    *self
                        .rng
                        .pick(&["timeout", "tool error", "context overflow", "rate limited"]);
                ("TASK_FAILED", Some(error))
            } else {
                ("TASK_COMPLETED", None)
            };
            self.emit(
                topic,
                correlation,
                t,
                json!({"event_type": kind, "event_ts": t, "session_id": session,
                       "task_id": task_id, "attempt": attempt, "agent_role": role,
                       "agent_id": agent, "model": model, "duration_ms": duration,
                       "tokens": tokens, "error": error}),
            );
            self.busy_until(agent, role, assigned, t);
            if !failed {
                return (t, true);
            }
        }
        (t, false)
    }

    fn busy_until(&mut self, agent: &str, role: &'static str, from: i64, to: i64) {
        match self.busy.iter_mut().find(|(a, ..)| a == agent) {
            Some(entry) => {
                entry.2 = entry.2.min(from);
                entry.3 = entry.3.max(to);
            }
            None => self.busy.push((agent.to_string(), role, from, to)),
        }
    }

    fn heartbeats(&mut self) {
        let busy = std::mem::take(&mut self.busy);
        for (agent, role, from, to) in &busy {
            let mut tokens = 0i64;
            let mut t = *from;
            while t <= *to + HEARTBEAT_MS {
                tokens += self.rng.range(0, 900);
                let status = if t > *to { "IDLE" } else { "BUSY" };
                let cpu = if t > *to {
                    2.0
                } else {
                    20.0 + self.rng.unit() * 70.0
                };
                let session = self.id.clone();
                self.emit(
                    MONITORING,
                    agent.clone(),
                    t,
                    json!({"event_ts": t, "session_id": session, "agent_role": role,
                           "status": status, "cpu_pct": (cpu * 10.0).round() / 10.0,
                           "tokens_total": tokens}),
                );
                t += HEARTBEAT_MS;
            }
        }
    }
}

impl Agents {
    pub fn new(rate: f64, seed: u64, start_ms: i64) -> Self {
        let rate = rate.max(0.001);
        Agents {
            rng: Rng::new(seed ^ 0xA6E7),
            timeline: Timeline::default(),
            next_session_at: start_ms as f64,
            interval_ms: MEAN_EVENTS_PER_SESSION / rate * 1000.0,
            sessions: 0,
            tasks: 0,
        }
    }

    fn start_session(&mut self, start: i64) {
        self.sessions += 1;
        let n = self.sessions;
        let id = format!("s-{n:05}");
        let manager_model = *self.rng.pick(MANAGER_MODELS);
        let worker_model = *self.rng.pick(WORKER_MODELS);
        let project = *self.rng.pick(PROJECTS);
        let mut s = Session {
            rng: &mut self.rng,
            tasks: &mut self.tasks,
            id: id.clone(),
            events: Vec::new(),
            manager: format!("mgr-{n}"),
            manager_model,
            worker_model,
            busy: Vec::new(),
        };
        let mut t = start;
        s.emit(
            SESSIONS,
            id.clone(),
            t,
            json!({"event_type": "SESSION_CREATED", "event_ts": t, "project": project,
                   "workflow_state": "PLANNING", "iteration": 0,
                   "manager_model": manager_model, "worker_model": worker_model}),
        );
        let manager = s.manager.clone();
        let (planned, ok) = s.task(t, "planner", &manager, 15_000.0, 0.03);
        t = planned;
        let mut outcome = if ok { None } else { Some("planning failed") };
        let mut iteration = 0;
        while outcome.is_none() {
            iteration += 1;
            s.state(t, "EXECUTING", iteration);
            // Workers run in parallel; the iteration waits for the slowest.
            let workers = s.rng.range(2, 4);
            let mut done = t;
            let mut all_ok = true;
            for w in 0..workers {
                let &(role, median, fail) = s.rng.pick(WORKER_ROLES);
                let agent = format!("wrk-{n}-{w}");
                let (end, ok) = s.task(t, role, &agent, median, fail);
                done = done.max(end);
                all_ok &= ok;
            }
            t = done;
            if !all_ok {
                outcome = Some("worker task failed after retries");
                break;
            }
            s.state(t, "REVIEWING", iteration);
            let (reviewed, _) = s.task(t, "reviewer", &manager, 20_000.0, 0.02);
            t = reviewed;
            let mut passed_all = true;
            for &(gate, pass) in GATE_KINDS {
                t += s.rng.range(200, 3000);
                // Later iterations fix what earlier ones broke.
                let passed = s.rng.chance(pass + 0.05 * (iteration - 1) as f64);
                passed_all &= passed;
                let score = if passed {
                    0.7 + 0.3 * s.rng.unit()
                } else {
                    0.7 * s.rng.unit()
                };
                s.emit(
                    GATES,
                    id.clone(),
                    t,
                    json!({"event_ts": t, "gate": gate, "passed": passed,
                           "score": (score * 1000.0).round() / 1000.0, "iteration": iteration}),
                );
            }
            if passed_all {
                break;
            }
            if iteration >= MAX_ITERATIONS {
                outcome = Some("quality gates still failing");
            }
        }
        t += s.rng.range(100, 1000);
        let (kind, state) = match outcome {
            None => ("SESSION_COMPLETED", "DONE"),
            Some(_) => ("SESSION_FAILED", "FAILED"),
        };
        s.emit(
            SESSIONS,
            id,
            t,
            json!({"event_type": kind, "event_ts": t, "workflow_state": state,
                   "iteration": iteration, "reason": outcome}),
        );
        s.heartbeats();
        let events = std::mem::take(&mut s.events);
        for e in events {
            self.timeline.schedule(e);
        }
    }
}

impl Scenario for Agents {
    fn name(&self) -> &'static str {
        "agents"
    }

    fn topics(&self) -> &'static [(&'static str, u32)] {
        &[
            (SESSIONS, 6),
            (MANAGER_TASKS, 3),
            (WORKER_TASKS, 3),
            (MONITORING, 12),
            (GATES, 2),
            ("analytics.aggregated", 6),
        ]
    }

    fn next_event(&mut self) -> Event {
        loop {
            let due = self.next_session_at as i64;
            match self.timeline.next_at() {
                Some(at) if at <= due => {
                    if let Some(event) = self.timeline.pop() {
                        return event;
                    }
                }
                _ => {
                    self.start_session(due);
                    self.next_session_at += self.rng.exponential(self.interval_ms).max(1.0);
                }
            }
        }
    }
}
