//! The routes of a config with an index by model, so that choosing a route costs the same with
//! ten routes or ten thousand.
//!
//! Routes are tried in order and the first whose every condition holds wins. A route whose
//! `models` are all exact names or `prefix*` globs can only match a request for one of those
//! models, so only routes whose model patterns fit the request's model, plus the routes that
//! may match any model, are tried — in their order, so the first match is the one the plain
//! scan would find (a test compares the two on generated configs).

use std::{
    borrow::Cow,
    collections::{BTreeSet, HashMap},
    ops::Deref,
};

use serde::Serialize;

use super::config::Route;

/// The config's routes, in order, and their index.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Routes {
    list: Vec<Route>,
    #[serde(skip)]
    index: ModelIndex,
}

#[derive(Clone, Debug, Default)]
struct ModelIndex {
    /// Routes with an exact model name, by that name.
    exact: HashMap<String, Vec<usize>>,
    /// Routes with a `prefix*` model pattern, by that prefix.
    prefixes: HashMap<String, Vec<usize>>,
    /// The lengths of those prefixes (in bytes), so a model is cut only where one can end.
    prefix_lens: BTreeSet<usize>,
    /// Routes that may match any model (no `models`, or another kind of glob), in order.
    any: Vec<usize>,
}

impl Routes {
    pub fn new(list: Vec<Route>) -> Routes {
        let mut index = ModelIndex::default();
        for (i, route) in list.iter().enumerate() {
            let models = &route.matches.models;
            let indexable = !models.is_empty() && models.iter().all(|g| g.literal().is_some() || g.prefix().is_some());
            if !indexable {
                index.any.push(i);
                continue;
            }
            for g in models {
                let (map, key) = match (g.literal(), g.prefix()) {
                    (Some(name), _) => (&mut index.exact, name),
                    (None, Some(prefix)) => {
                        index.prefix_lens.insert(prefix.len());
                        (&mut index.prefixes, prefix)
                    }
                    (None, None) => unreachable!("checked above"),
                };
                let routes = map.entry(key.to_string()).or_default();
                // A route listing two patterns that fit one model is tried once.
                if routes.last() != Some(&i) {
                    routes.push(i);
                }
            }
        }
        Routes { list, index }
    }

    /// The routes that can match a request for `model`, in order (a superset of those that
    /// match: every other condition is still to be checked).
    pub fn candidates(&self, model: Option<&str>) -> Cow<'_, [usize]> {
        let ix = &self.index;
        let Some(model) = model.filter(|_| !ix.exact.is_empty() || !ix.prefixes.is_empty()) else {
            // Routes with model patterns never match a request without a model; with none
            // indexed, every route is a candidate.
            return Cow::Borrowed(&ix.any);
        };
        let mut out = ix.any.clone();
        if let Some(routes) = ix.exact.get(model) {
            out.extend_from_slice(routes);
        }
        for &len in ix.prefix_lens.range(..=model.len()) {
            if let Some(routes) = model.get(..len).and_then(|p| ix.prefixes.get(p)) {
                out.extend_from_slice(routes);
            }
        }
        out.sort_unstable();
        out.dedup();
        Cow::Owned(out)
    }
}

impl Deref for Routes {
    type Target = [Route];

    fn deref(&self) -> &[Route] {
        &self.list
    }
}
