//! Per-route configuration: method + path pattern → a value, matched with
//! `matchit` (the router axum uses), so patterns read like axum routes:
//! `/users/{id}`, `/api/{*rest}`.
//!
//! ```
//! use http::Method;
//! use tower_kv::routes::RouteTable;
//!
//! let table = RouteTable::new()
//!     .route(Some(Method::POST), "/login", "strict")
//!     .route(None, "/api/{*rest}", "api");
//! assert_eq!(table.at(&Method::POST, "/login").map(|r| *r.value), Some("strict"));
//! assert_eq!(table.at(&Method::GET, "/api/users/7").map(|r| r.id), Some("* /api/{*rest}"));
//! assert!(table.at(&Method::GET, "/login").is_none());
//! ```

use std::collections::HashMap;

use http::Method;

/// A table of routes, each with a value; the most specific pattern wins, and
/// a route for the request's method wins over one for any method.
#[derive(Clone, Debug)]
pub struct RouteTable<T> {
    by_method: HashMap<Method, matchit::Router<usize>>,
    any_method: matchit::Router<usize>,
    entries: Vec<(String, T)>,
}

/// A matched route.
#[derive(Debug)]
pub struct RouteMatch<'a, T> {
    /// The route's id: `"GET /users/{id}"`, or `"* /path"` for any method.
    pub id: &'a str,
    /// The route's value.
    pub value: &'a T,
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for one method (`Some`) or every method (`None`).
    ///
    /// # Panics
    ///
    /// If the pattern is invalid or conflicts with one already added for the
    /// same method, as axum's router does: a configuration error.
    #[must_use]
    pub fn route(mut self, method: Option<Method>, pattern: &str, value: T) -> Self {
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

    /// The route matching `method` and `path`, if any.
    pub fn at(&self, method: &Method, path: &str) -> Option<RouteMatch<'_, T>> {
        if self.entries.is_empty() {
            return None;
        }
        let index = self
            .by_method
            .get(method)
            .and_then(|r| r.at(path).ok())
            .or_else(|| self.any_method.at(path).ok())
            .map(|m| *m.value)?;
        let (id, value) = &self.entries[index];
        Some(RouteMatch { id, value })
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
        let at = |m: Method, p: &str| table.at(&m, p).map(|r| *r.value);
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
