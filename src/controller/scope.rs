//! Where the operator watches: every namespace with one watch each kind, or a list of
//! namespaces with one watch per namespace, so that an operator given a list needs a Role
//! in each of them and no cluster-wide right at all.
//!
//! One watch per namespace means several initial lists feed one cache. kube's reflector
//! replaces its whole store when a list completes, which would drop the other namespaces'
//! AiApps, so [`merge`] turns the namespaces' events into the events of one watch: one
//! initial list across all namespaces, then per namespace, a relist that applies what it
//! lists and deletes from the cache what it no longer lists.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use futures::{Stream, StreamExt, stream};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// The namespaces the operator watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (a cluster-wide watch).
    All,
    /// These namespaces, one watch each.
    Namespaces(Vec<String>),
}

impl Scope {
    /// The scope of a `--namespace` list; an empty list means every namespace.
    pub fn of(namespaces: &[String]) -> Scope {
        if namespaces.is_empty() {
            Scope::All
        } else {
            Scope::Namespaces(namespaces.to_vec())
        }
    }

    /// One API handle per watch: `Api::all` for every namespace, else one per namespace.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::All => vec![Api::all(client.clone())],
            Scope::Namespaces(namespaces) => namespaces
                .iter()
                .map(|namespace| Api::namespaced(client.clone(), namespace))
                .collect(),
        }
    }
}

/// The watch events of `apis` (one per namespace of `namespaces`, in the same order) as
/// the events of one watch, for one reflector whose store `reader` reads. `reader` must be
/// that reflector's store: a relist deletes from it what the namespace no longer holds.
pub fn merge<K>(
    namespaces: Vec<String>,
    apis: Vec<Api<K>>,
    config: watcher::Config,
    reader: Store<K>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let tagged = stream::select_all(apis.into_iter().enumerate().map(|(index, api)| {
        watcher::watcher(api, config.clone())
            .default_backoff()
            .map(move |event| (index, event))
            .boxed()
    }));
    let mut merger = Merger::new(namespaces);
    tagged.flat_map(move |(index, event)| {
        let outputs = match event {
            Ok(event) => merger.step(index, event),
            Err(error) => return stream::iter(vec![Err(error)]).boxed(),
        };
        let reader = reader.clone();
        stream::iter(outputs)
            .flat_map(move |output| match output {
                Output::Event(event) => stream::iter(vec![Ok(event)]).boxed(),
                // Read the cache only when reached, so that it holds every event before.
                Output::Sweep { namespace, keep } => {
                    let reader = reader.clone();
                    stream::once(async move { stale(&reader, &namespace, &keep) })
                        .flat_map(|gone| {
                            stream::iter(gone.into_iter().map(|o| Ok(Event::Delete(o))))
                        })
                        .boxed()
                }
            })
            .boxed()
    })
}

/// The cached objects of `namespace` that are not in `keep`.
fn stale<K>(reader: &Store<K>, namespace: &str, keep: &HashSet<ObjectRef<K>>) -> Vec<K>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    reader
        .state()
        .into_iter()
        .filter(|cached| cached.namespace().as_deref() == Some(namespace))
        .filter(|cached| !keep.contains(&ObjectRef::from_obj(cached.as_ref())))
        .map(|cached| cached.as_ref().clone())
        .collect()
}

/// What the merged watch emits: an event, or "delete from the cache what `namespace` holds
/// beyond `keep`", evaluated once every event before it reached the cache.
enum Output<K: Resource> {
    Event(Event<K>),
    Sweep {
        namespace: String,
        keep: HashSet<ObjectRef<K>>,
    },
}

/// Turns several watches' events into one watch's (see the module doc). Pure: the cache
/// is only read when a [`Output::Sweep`] is carried out.
struct Merger<K: Resource> {
    namespaces: Vec<String>,
    started: bool,
    /// Until the first complete list: the watches whose initial list is not done yet.
    initial: Option<HashSet<usize>>,
    /// What each watch listed in its current list.
    listed: HashMap<usize, HashSet<ObjectRef<K>>>,
    /// Changes a watch saw after its own initial list, held until every watch listed: the
    /// store applies them to the live cache, which the one `InitDone` then replaces.
    held: Vec<(usize, Event<K>)>,
}

impl<K> Merger<K>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    fn new(namespaces: Vec<String>) -> Self {
        Merger {
            initial: Some((0..namespaces.len()).collect()),
            namespaces,
            started: false,
            listed: HashMap::new(),
            held: Vec::new(),
        }
    }

    fn step(&mut self, watch: usize, event: Event<K>) -> Vec<Output<K>> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(Output::Event(Event::Init));
        }
        match event {
            Event::Init => {
                self.listed.insert(watch, HashSet::new());
                if let Some(pending) = self.initial.as_mut() {
                    // A watch that lists again supersedes what it saw before.
                    pending.insert(watch);
                    self.held.retain(|(from, _)| *from != watch);
                }
            }
            Event::InitApply(object) => {
                self.listed
                    .entry(watch)
                    .or_default()
                    .insert(ObjectRef::from_obj(&object));
                out.push(Output::Event(match self.initial {
                    Some(_) => Event::InitApply(object),
                    None => Event::Apply(object),
                }));
            }
            Event::InitDone => match self.initial.as_mut() {
                Some(pending) => {
                    pending.remove(&watch);
                    if pending.is_empty() {
                        self.initial = None;
                        out.push(Output::Event(Event::InitDone));
                        // A watch that listed twice may have left what it no longer holds.
                        for (watch, keep) in self.listed.drain() {
                            out.push(Output::Sweep {
                                namespace: self.namespaces[watch].clone(),
                                keep,
                            });
                        }
                        out.extend(self.held.drain(..).map(|(_, e)| Output::Event(e)));
                    }
                }
                None => {
                    let keep = self.listed.remove(&watch).unwrap_or_default();
                    out.push(Output::Sweep {
                        namespace: self.namespaces[watch].clone(),
                        keep,
                    });
                }
            },
            change @ (Event::Apply(_) | Event::Delete(_)) => match self.initial {
                Some(_) => self.held.push((watch, change)),
                None => out.push(Output::Event(change)),
            },
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn object(namespace: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    /// A reflector's store, applying events as kube's does (with its Init buffer), and
    /// carrying out sweeps against what it holds at that point.
    #[derive(Default)]
    struct Cache {
        live: BTreeMap<(String, String), ConfigMap>,
        buffer: BTreeMap<(String, String), ConfigMap>,
        ready: bool,
    }

    fn key(o: &ConfigMap) -> (String, String) {
        (o.namespace().unwrap_or_default(), o.name_any())
    }

    impl Cache {
        fn apply(&mut self, outputs: Vec<Output<ConfigMap>>) {
            for output in outputs {
                match output {
                    Output::Event(Event::Init) => self.buffer.clear(),
                    Output::Event(Event::InitApply(o)) => {
                        self.buffer.insert(key(&o), o);
                    }
                    Output::Event(Event::InitDone) => {
                        self.live = std::mem::take(&mut self.buffer);
                        self.ready = true;
                    }
                    Output::Event(Event::Apply(o)) => {
                        self.live.insert(key(&o), o);
                    }
                    Output::Event(Event::Delete(o)) => {
                        self.live.remove(&key(&o));
                    }
                    Output::Sweep { namespace, keep } => self.live.retain(|(ns, _), o| {
                        *ns != namespace || keep.contains(&ObjectRef::from_obj(o))
                    }),
                }
            }
        }

        fn names(&self) -> Vec<String> {
            self.live
                .keys()
                .map(|(ns, n)| format!("{ns}/{n}"))
                .collect()
        }
    }

    fn merger() -> Merger<ConfigMap> {
        Merger::new(vec!["a".to_owned(), "b".to_owned()])
    }

    #[test]
    fn the_cache_is_ready_once_every_namespace_listed_and_holds_them_all() {
        let (mut merger, mut cache) = (merger(), Cache::default());
        cache.apply(merger.step(0, Event::Init));
        cache.apply(merger.step(0, Event::InitApply(object("a", "one"))));
        cache.apply(merger.step(0, Event::InitDone));
        assert!(!cache.ready, "ready before namespace b listed");
        // A change in a after its list, before b's list is done, is not lost.
        cache.apply(merger.step(0, Event::Apply(object("a", "two"))));
        cache.apply(merger.step(1, Event::Init));
        cache.apply(merger.step(1, Event::InitApply(object("b", "three"))));
        cache.apply(merger.step(1, Event::InitDone));
        assert!(cache.ready);
        assert_eq!(cache.names(), ["a/one", "a/two", "b/three"]);
    }

    #[test]
    fn a_relist_of_one_namespace_keeps_the_others_and_drops_what_it_no_longer_holds() {
        let (mut merger, mut cache) = (merger(), Cache::default());
        for (watch, namespace) in [(0, "a"), (1, "b")] {
            cache.apply(merger.step(watch, Event::Init));
            cache.apply(merger.step(watch, Event::InitApply(object(namespace, "old"))));
            cache.apply(merger.step(watch, Event::InitDone));
        }
        // a's watch expired: it lists again, and "old" was deleted meanwhile.
        cache.apply(merger.step(0, Event::Init));
        cache.apply(merger.step(0, Event::InitApply(object("a", "new"))));
        assert_eq!(cache.names(), ["a/new", "a/old", "b/old"]);
        cache.apply(merger.step(0, Event::InitDone));
        assert_eq!(cache.names(), ["a/new", "b/old"]);
    }

    #[test]
    fn a_namespace_that_lists_again_before_all_listed_leaves_nothing_stale() {
        let (mut merger, mut cache) = (merger(), Cache::default());
        cache.apply(merger.step(0, Event::Init));
        cache.apply(merger.step(0, Event::InitApply(object("a", "gone"))));
        cache.apply(merger.step(0, Event::InitDone));
        cache.apply(merger.step(0, Event::Apply(object("a", "superseded"))));
        // a's watch fails and lists again; neither object is there any more.
        cache.apply(merger.step(0, Event::Init));
        cache.apply(merger.step(0, Event::InitApply(object("a", "kept"))));
        cache.apply(merger.step(0, Event::InitDone));
        cache.apply(merger.step(1, Event::Init));
        cache.apply(merger.step(1, Event::InitDone));
        assert!(cache.ready);
        assert_eq!(cache.names(), ["a/kept"]);
    }

    #[test]
    fn an_empty_relist_empties_its_namespace() {
        let (mut merger, mut cache) = (merger(), Cache::default());
        for (watch, namespace) in [(0, "a"), (1, "b")] {
            cache.apply(merger.step(watch, Event::Init));
            cache.apply(merger.step(watch, Event::InitApply(object(namespace, "x"))));
            cache.apply(merger.step(watch, Event::InitDone));
        }
        cache.apply(merger.step(1, Event::Init));
        cache.apply(merger.step(1, Event::InitDone));
        assert_eq!(cache.names(), ["a/x"]);
    }

    #[test]
    fn changes_after_the_first_list_pass_straight_through() {
        let (mut merger, mut cache) = (merger(), Cache::default());
        for watch in [0, 1] {
            cache.apply(merger.step(watch, Event::Init));
            cache.apply(merger.step(watch, Event::InitDone));
        }
        cache.apply(merger.step(1, Event::Apply(object("b", "x"))));
        assert_eq!(cache.names(), ["b/x"]);
        cache.apply(merger.step(1, Event::Delete(object("b", "x"))));
        assert!(cache.names().is_empty());
    }
}
