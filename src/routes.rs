//! Per-route configuration: method + path pattern → a value, matched with
//! `matchit` (the router axum uses), so patterns read like axum routes:
//! `/users/{id}`, `/api/{*rest}`.

use std::collections::HashMap;

use http::Method;

/// A table of routes, each with a value; the most specific pattern wins, and
/// a route for the request's method wins over one for any method.
#[derive(Clone, Debug)]
pub(crate) struct RouteTable<T> {
    by_method: HashMap<Method, matchit::Router<usize>>,
    any_method: matchit::Router<usize>,
    entries: Vec<(String, T)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            by_method: HashMap::new(),
            any_method: matchit::Router::new(),
            entries: Vec::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a route for one method (`Some`) or every method (`None`).
    ///
    /// # Panics
    ///
    /// If the pattern is invalid or conflicts with one already added for the
    /// same method, as axum's router does: a configuration error.
    #[must_use]
    pub(crate) fn route(mut self, method: Option<Method>, pattern: &str, value: T) -> Self {
        let index = self.entries.len();
        let (router, id) = match method {
            Some(m) => {
                let id = format!("{m} {pattern}");
                (self.by_method.entry(m).or_default(), id)
            }
            None => (&mut self.any_method, format!("* {pattern}")),
        };
        if let Err(e) = router.insert(pattern, index) {
            panic!("route {id:?}: {e}");
        }
        self.entries.push((id, value));
        self
    }

    /// The value of the route matching `method` and `path`, if any.
    pub(crate) fn at(&self, method: &Method, path: &str) -> Option<&T> {
        if self.entries.is_empty() {
            return None;
        }
        let index = self
            .by_method
            .get(method)
            .and_then(|r| r.at(path).ok())
            .or_else(|| self.any_method.at(path).ok())
            .map(|m| *m.value)?;
        Some(&self.entries[index].1)
    }

    /// The same routes with values computed from each route's id and value.
    pub(crate) fn map<U>(&self, mut f: impl FnMut(&str, &T) -> U) -> RouteTable<U> {
        RouteTable {
            by_method: self.by_method.clone(),
            any_method: self.any_method.clone(),
            entries: self
                .entries
                .iter()
                .map(|(id, value)| (id.clone(), f(id, value)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_wildcards_and_methods() {
        let table = RouteTable::new()
            .route(Some(Method::GET), "/users/{id}", 1)
            .route(None, "/users/{id}", 2)
            .route(None, "/users/me", 3)
            .route(None, "/api/{*rest}", 4);
        let at = |m: Method, p: &str| table.at(&m, p).copied();
        assert_eq!(at(Method::GET, "/users/42"), Some(1));
        assert_eq!(at(Method::DELETE, "/users/42"), Some(2));
        assert_eq!(
            at(Method::GET, "/users/me"),
            Some(1),
            "method-specific routes win"
        );
        assert_eq!(
            at(Method::POST, "/users/me"),
            Some(3),
            "static segments beat parameters"
        );
        assert_eq!(at(Method::GET, "/api/a/b/c"), Some(4));
        assert_eq!(at(Method::GET, "/users"), None);
        assert_eq!(at(Method::GET, "/users/42/extra"), None);
    }

    #[test]
    #[should_panic(expected = "route")]
    fn conflicting_routes_are_a_configuration_error() {
        let _ = RouteTable::new()
            .route(None, "/users/{id}", 1)
            .route(None, "/users/{name}", 2);
    }
}
