//! The human-vs-robot match game: in each match a few humans and one
//! robot chat, then the humans vote on who the robot is. The humans win
//! if they unmask it, the robot wins if it goes undetected.
//!
//! Events go to `match.events`, keyed by match id, with the fields of
//! `queries/10_match_events.sql`.

use serde_json::{Value, json};

use super::{Event, Rng, Scenario, Timeline};

const TOPIC: &str = "match.events";

/// A robot model: its median response latency (ms), how verbose it is
/// (median tokens), and how hard it is to unmask (chance a human voter
/// picks it).
struct Model {
    name: &'static str,
    latency_ms: f64,
    tokens: f64,
    detected: f64,
}

const MODELS: &[Model] = &[
    Model {
        name: "gpt-4o",
        latency_ms: 850.0,
        tokens: 48.0,
        detected: 0.48,
    },
    Model {
        name: "claude-sonnet-4",
        latency_ms: 1100.0,
        tokens: 55.0,
        detected: 0.40,
    },
    Model {
        name: "llama-3.1-70b",
        latency_ms: 620.0,
        tokens: 40.0,
        detected: 0.62,
    },
    Model {
        name: "mistral-large",
        latency_ms: 760.0,
        tokens: 44.0,
        detected: 0.55,
    },
    Model {
        name: "gemini-2.0-flash",
        latency_ms: 430.0,
        tokens: 36.0,
        detected: 0.58,
    },
];

const HUMANS: &[&str] = &[
    "ada",
    "alan",
    "grace",
    "linus",
    "barbara",
    "dennis",
    "margaret",
    "ken",
    "frances",
    "edsger",
    "radia",
    "tim",
    "hedy",
    "guido",
    "katherine",
    "donald",
    "sophie",
    "bjarne",
    "joan",
    "niklaus",
    "anita",
    "john",
    "lynn",
    "yukihiro",
    "mary",
    "james",
    "annie",
    "brendan",
    "jean",
    "rob",
];

const LINES: &[&str] = &[
    "hi all, where is everyone from?",
    "honestly this round feels easy",
    "what did you have for breakfast?",
    "that answer was way too polished",
    "lol no way",
    "I'm on my phone so typing slowly",
    "can someone name a song they hate?",
    "ok who is the bot here",
    "the weather here is awful today",
    "say something only a human would say",
    "hmm suspicious timing",
    "my cat just walked over the keyboard",
    "that's exactly what a robot would say",
    "I think it's the quiet one",
    "favourite pizza topping, go",
];

/// Game modes: name, humans in the match, message range.
const MODES: &[(&str, usize, (i64, i64))] = &[
    ("classic", 3, (12, 40)),
    ("duel", 1, (6, 20)),
    ("blitz", 2, (2, 10)),
];

/// The matches scenario.
pub struct Matches {
    rng: Rng,
    timeline: Timeline,
    next_match_at: f64,
    /// Mean milliseconds between match starts.
    interval_ms: f64,
    matches: u64,
}

/// Events a match produces on average, to turn an event rate into a match
/// start rate.
const MEAN_EVENTS_PER_MATCH: f64 = 24.0;

impl Matches {
    pub fn new(rate: f64, seed: u64, start_ms: i64) -> Self {
        let rate = rate.max(0.001);
        Matches {
            rng: Rng::new(seed),
            timeline: Timeline::default(),
            next_match_at: start_ms as f64,
            interval_ms: MEAN_EVENTS_PER_MATCH / rate * 1000.0,
            matches: 0,
        }
    }

    fn start_match(&mut self, start: i64) {
        self.matches += 1;
        let rng = &mut self.rng;
        let id = format!("m-{:06}", self.matches);
        let &(mode, humans_wanted, (min_messages, max_messages)) = rng.pick(MODES);
        let model = rng.pick(MODELS);
        let mut humans: Vec<String> = Vec::new();
        while humans.len() < humans_wanted {
            let name = rng.pick(HUMANS).to_string();
            if !humans.contains(&name) {
                humans.push(name);
            }
        }
        let robot = format!("bot-{}", model.name);
        let mut events = Vec::new();
        let mut t = start;
        let event = |t: i64, value: Value| Event {
            topic: TOPIC,
            key: id.clone(),
            value,
            timestamp: t,
        };
        events.push(event(
            t,
            json!({"event_type": "MATCH_CREATED", "event_ts": t, "mode": mode}),
        ));
        // The robot joins at a random place among the humans.
        let robot_slot = rng.range(0, humans.len() as i64) as usize;
        for slot in 0..=humans.len() {
            t += rng.range(200, 3000);
            let joined = if slot == robot_slot {
                json!({"event_type": "PLAYER_JOINED", "event_ts": t, "player_id": robot,
                       "player_kind": "ROBOT", "model": model.name})
            } else {
                let human = &humans[if slot > robot_slot { slot - 1 } else { slot }];
                json!({"event_type": "PLAYER_JOINED", "event_ts": t, "player_id": human,
                       "player_kind": "HUMAN"})
            };
            events.push(event(t, joined));
        }
        let abandoned = rng.chance(0.05);
        let messages = rng.range(min_messages, max_messages);
        let mut sent = 0;
        while sent < messages {
            t += rng.log_normal(2500.0, 0.6) as i64;
            let speaker = rng.pick(&humans).clone();
            events.push(event(
                t,
                json!({"event_type": "MESSAGE_SENT", "event_ts": t, "player_id": speaker,
                       "player_kind": "HUMAN", "text": rng.pick(LINES)}),
            ));
            sent += 1;
            // The robot answers about half of the messages.
            if sent < messages && rng.chance(0.5) {
                let latency = rng.log_normal(model.latency_ms, 0.45).max(80.0) as i64;
                t += latency;
                let tokens = rng.log_normal(model.tokens, 0.35).max(3.0) as i64;
                events.push(event(
                    t,
                    json!({"event_type": "ROBOT_RESPONSE", "event_ts": t, "player_id": robot,
                           "player_kind": "ROBOT", "model": model.name,
                           "text": rng.pick(LINES), "latency_ms": latency, "tokens": tokens}),
                ));
                sent += 1;
            }
        }
        let mut players: Vec<Value> = humans
            .iter()
            .map(|h| json!({"id": h, "kind": "HUMAN", "model": null}))
            .collect();
        players.insert(
            robot_slot,
            json!({"id": robot, "kind": "ROBOT", "model": model.name}),
        );
        let (winner, reason) = if abandoned {
            (Value::Null, "ABANDONED")
        } else {
            let mut votes_on_robot = 0;
            for voter in &humans {
                t += rng.range(500, 6000);
                let suspect = if rng.chance(model.detected) {
                    votes_on_robot += 1;
                    robot.clone()
                } else {
                    // A wrong guess: another human (in a duel, a pass).
                    humans
                        .iter()
                        .find(|h| *h != voter)
                        .cloned()
                        .unwrap_or_else(|| voter.clone())
                };
                events.push(event(
                    t,
                    json!({"event_type": "VOTE_CAST", "event_ts": t, "voter_id": voter,
                           "suspect_id": suspect}),
                ));
            }
            if votes_on_robot * 2 > humans.len() {
                (json!("HUMANS"), "ROBOT_UNMASKED")
            } else {
                (json!("ROBOT"), "ROBOT_UNDETECTED")
            }
        };
        t += rng.range(200, 1500);
        events.push(event(
            t,
            json!({"event_type": "MATCH_ENDED", "event_ts": t, "winner": winner,
                   "reason": reason, "model": model.name, "players": players}),
        ));
        for e in events {
            self.timeline.schedule(e);
        }
    }
}

impl Scenario for Matches {
    fn name(&self) -> &'static str {
        "matches"
    }

    fn topics(&self) -> &'static [(&'static str, u32)] {
        &[(TOPIC, 3)]
    }

    fn next_event(&mut self) -> Event {
        loop {
            let due = self.next_match_at as i64;
            match self.timeline.next_at() {
                Some(at) if at <= due => {
                    if let Some(event) = self.timeline.pop() {
                        return event;
                    }
                }
                _ => {
                    self.start_match(due);
                    self.next_match_at += self.rng.exponential(self.interval_ms).max(1.0);
                }
            }
        }
    }
}
