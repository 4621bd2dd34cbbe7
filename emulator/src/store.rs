//! Every app the emulator holds: creation (ids, names), kill, per-account listing, and
//! eviction of ended apps so that memory stays bounded while apps churn.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::apps::{
    ACCEPTED_MS_ENV, App, AppSnapshot, OUTCOME_ENV, Outcome, Owner, RUNNING_MS_ENV, Timeline,
};
use crate::request::SubmitBody;

/// Result of a kill.
#[derive(Debug, PartialEq, Eq)]
pub enum KillOutcome {
    /// The kill is made: the app ends now, or after the delay given.
    Killed,
    /// An earlier kill is still on its way (`slowKill`); this one changes nothing.
    AlreadyKilling,
    AlreadyEnded,
    NotFound,
}

/// Every app held, in creation order, with ended apps evicted past `retain`.
#[derive(Debug)]
pub struct AppStore {
    apps: HashMap<String, App>,
    order: VecDeque<String>,
    retain: usize,
    created: u64,
    evicted: u64,
}

impl AppStore {
    pub fn new(retain: usize) -> Self {
        Self {
            apps: HashMap::new(),
            order: VecDeque::new(),
            retain,
            created: 0,
            evicted: 0,
        }
    }

    /// Creates an app from a validated request.
    pub fn create(
        &mut self,
        owner: Owner,
        request: SubmitBody,
        defaults: (Timeline, Outcome),
        listing_lag: Duration,
    ) -> &App {
        let now = Instant::now();
        let env = &request.docker.env;
        let env_ms = |key: &str| {
            env.get(key)
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_millis)
        };
        let timeline = Timeline {
            accepted: env_ms(ACCEPTED_MS_ENV).unwrap_or(defaults.0.accepted),
            running: env_ms(RUNNING_MS_ENV).unwrap_or(defaults.0.running),
        };
        let outcome = env
            .get(OUTCOME_ENV)
            .and_then(|v| Outcome::parse(v))
            .unwrap_or(defaults.1);
        let id = loop {
            let id: String = std::iter::repeat_with(fastrand::alphanumeric)
                .take(22)
                .collect();
            if !self.apps.contains_key(&id) {
                break id;
            }
        };
        let part = || -> String {
            std::iter::repeat_with(|| fastrand::digit(36))
                .take(4)
                .collect()
        };
        self.created += 1;
        let app = App {
            name: format!("{}-{}-{}", request.name_prefix, part(), part()),
            id: id.clone(),
            owner,
            request,
            seq: self.created,
            created: now,
            created_at: Timestamp::now(),
            timeline,
            outcome,
            killed: None,
            listed_after: now + listing_lag,
        };
        self.apps.insert(id.clone(), app);
        self.order.push_back(id.clone());
        self.evict(now);
        &self.apps[&id]
    }

    /// Drops the oldest ended apps while more than `retain` are held. Live apps stay: an
    /// emulator that forgot a running app would lie to the controller.
    fn evict(&mut self, now: Instant) {
        let mut index = 0;
        let mut scanned = 0;
        while self.apps.len() > self.retain && index < self.order.len() && scanned < 256 {
            scanned += 1;
            let ended = self
                .apps
                .get(&self.order[index])
                .is_none_or(|a| a.is_terminal(now));
            if ended {
                let id = self.order.remove(index).expect("index is in range");
                if self.apps.remove(&id).is_some() {
                    self.evicted += 1;
                }
            } else {
                index += 1;
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&App> {
        self.apps.get(id)
    }

    /// Kills a live app of `account_id`. `delay` is asked only when a kill is made, so a
    /// `slowKill` fault is not spent on an app that is missing, ended or already killed.
    pub fn kill(
        &mut self,
        id: &str,
        account_id: &str,
        delay: impl FnOnce() -> Duration,
    ) -> KillOutcome {
        let now = Instant::now();
        match self
            .apps
            .get_mut(id)
            .filter(|a| a.owner.account_id == account_id)
        {
            None => KillOutcome::NotFound,
            Some(app) if app.is_terminal(now) => KillOutcome::AlreadyEnded,
            // Keeping the first kill's end time: a repeated kill does not hurry a slow one.
            Some(app) if app.kill_pending(now) => KillOutcome::AlreadyKilling,
            Some(app) => {
                let at = now.saturating_duration_since(app.created);
                app.killed = Some(at.saturating_add(delay()));
                KillOutcome::Killed
            }
        }
    }

    /// Apps of one account that getList shows now, oldest first.
    pub fn listed<'a>(
        &'a self,
        account_id: &'a str,
        now: Instant,
    ) -> impl Iterator<Item = &'a App> + 'a {
        self.order
            .iter()
            .filter_map(|id| self.apps.get(id))
            .filter(move |a| a.owner.account_id == account_id && now >= a.listed_after)
    }

    pub fn snapshots(&self, now: Instant) -> Vec<AppSnapshot> {
        self.order
            .iter()
            .filter_map(|id| self.apps.get(id))
            .map(|a| a.snapshot(now))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn created(&self) -> u64 {
        self.created
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Data, Docker, Resource};

    fn request(env: &[(&str, &str)]) -> SubmitBody {
        SubmitBody {
            ai_workspace_id: "ws".into(),
            name_prefix: "ab".into(),
            queue_name: "gpu".into(),
            data: Data::default(),
            docker: Docker {
                image: "img".into(),
                command: "run".into(),
                args: None,
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                expose_tcp_ports: Vec::new(),
                workdir: None,
            },
            resource: Resource::default(),
        }
    }

    fn owner() -> Owner {
        Owner {
            account_id: "acct".into(),
            account_name: "name".into(),
        }
    }

    fn create(store: &mut AppStore, env: &[(&str, &str)], timeline: Timeline) -> String {
        store
            .create(
                owner(),
                request(env),
                (timeline, Outcome::Succeeded),
                Duration::ZERO,
            )
            .id
            .clone()
    }

    #[test]
    fn an_app_moves_through_accepted_running_and_finished_on_its_timeline() {
        let mut store = AppStore::new(10);
        let id = create(
            &mut store,
            &[],
            Timeline {
                accepted: Duration::from_secs(10),
                running: Duration::from_secs(10),
            },
        );
        let app = store.get(&id).unwrap();
        let t0 = app.created;
        let at = |s: u64| app.status(t0 + Duration::from_secs(s));
        assert_eq!((at(0).state, at(0).final_status), ("ACCEPTED", "UNDEFINED"));
        assert_eq!(
            (at(10).state, at(10).final_status),
            ("RUNNING", "UNDEFINED")
        );
        assert_eq!(
            (at(20).state, at(20).final_status),
            ("FINISHED", "SUCCEEDED")
        );
        assert_eq!(at(25).ended_after, Some(Duration::from_secs(20)));
    }

    #[test]
    fn the_outcome_and_timeline_can_be_chosen_per_app_through_its_env() {
        let mut store = AppStore::new(10);
        let long = Timeline {
            accepted: Duration::from_secs(3600),
            running: Duration::ZERO,
        };
        for (value, expected) in [
            ("FAILED", ("FAILED", "FAILED")),
            ("finished_failed", ("FINISHED", "FAILED")),
        ] {
            let id = create(
                &mut store,
                &[(OUTCOME_ENV, value), (ACCEPTED_MS_ENV, "0")],
                long,
            );
            let s = store.get(&id).unwrap().status(Instant::now());
            assert_eq!((s.state, s.final_status), expected);
        }
    }

    #[test]
    fn killing_a_live_app_ends_it_and_killing_again_reports_already_ended() {
        let mut store = AppStore::new(10);
        let id = create(&mut store, &[], Timeline::default());
        let now = || Duration::ZERO;
        assert_eq!(store.kill(&id, "other-account", now), KillOutcome::NotFound);
        assert_eq!(store.kill(&id, "acct", now), KillOutcome::Killed);
        assert_eq!(
            store.get(&id).unwrap().status(Instant::now()).state,
            "KILLED"
        );
        assert_eq!(store.kill(&id, "acct", now), KillOutcome::AlreadyEnded);
        assert_eq!(store.kill("nope", "acct", now), KillOutcome::NotFound);
    }

    #[test]
    fn a_slow_kill_leaves_the_app_live_until_its_delay_and_a_repeat_keeps_that_end() {
        let mut store = AppStore::new(10);
        let hour = Duration::from_secs(3600);
        let id = create(
            &mut store,
            &[],
            Timeline {
                accepted: hour,
                running: hour,
            },
        );
        let slow = || Duration::from_secs(60);
        assert_eq!(store.kill(&id, "acct", slow), KillOutcome::Killed);
        let app = store.get(&id).unwrap();
        let killed_at = app.killed.unwrap();
        let at = |d: Duration| app.status(app.created + d);
        assert_eq!(at(killed_at - Duration::from_millis(1)).state, "ACCEPTED");
        assert_eq!(at(killed_at).state, "KILLED");
        assert_eq!(at(killed_at).ended_after, Some(killed_at));
        assert!(app.kill_pending(Instant::now()));
        let never = || -> Duration { panic!("a repeated kill must not ask for a new delay") };
        assert_eq!(store.kill(&id, "acct", never), KillOutcome::AlreadyKilling);
        assert_eq!(store.get(&id).unwrap().killed, Some(killed_at));
    }

    #[test]
    fn a_slow_kill_landing_after_the_natural_end_leaves_the_natural_outcome() {
        let mut store = AppStore::new(10);
        let id = create(
            &mut store,
            &[],
            Timeline {
                accepted: Duration::from_secs(1),
                running: Duration::from_secs(1),
            },
        );
        store.kill(&id, "acct", || Duration::from_secs(60));
        let app = store.get(&id).unwrap();
        let s = app.status(app.created + Duration::from_secs(120));
        assert_eq!((s.state, s.final_status), ("FINISHED", "SUCCEEDED"));
    }

    #[test]
    fn ended_apps_are_evicted_oldest_first_and_live_ones_never() {
        let mut store = AppStore::new(3);
        let live = create(
            &mut store,
            &[],
            Timeline {
                accepted: Duration::from_secs(3600),
                running: Duration::ZERO,
            },
        );
        let ended: Vec<_> = (0..5)
            .map(|_| create(&mut store, &[], Timeline::ZERO))
            .collect();
        assert_eq!(store.len(), 3);
        assert!(store.get(&live).is_some());
        assert!(store.get(&ended[0]).is_none() && store.get(&ended[2]).is_none());
        assert!(store.get(&ended[3]).is_some() && store.get(&ended[4]).is_some());
        assert_eq!(store.evicted(), 3);
        assert_eq!(store.created(), 6);
    }

    #[test]
    fn ids_are_22_base62_characters_and_names_follow_the_prefix_pattern() {
        let mut store = AppStore::new(100);
        for _ in 0..50 {
            let id = create(&mut store, &[], Timeline::ZERO);
            let app = store.get(&id).unwrap();
            assert_eq!(app.id.len(), 22);
            assert!(app.id.chars().all(|c| c.is_ascii_alphanumeric()));
            let parts: Vec<_> = app.name.split('-').collect();
            assert_eq!(parts.len(), 3, "{}", app.name);
            assert_eq!(parts[0], "ab");
            assert!(parts[1..].iter().all(|p| {
                p.len() == 4
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            }));
        }
    }
}
