//! Maps a method and path to an endpoint. Built once from a route table
//! handed down by the caller (the appliance's is `api::ROUTES`); generic over
//! the endpoint type, so the transport knows no handler. Distinguishes unknown paths (`404`) from known paths with a
//! wrong method (`405` + `Allow`), before any authentication.

use hyper::Method;
use hyper::header::HeaderValue;

/// An HTTP method the appliance routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET
    Get,
    /// POST
    Post,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Verb {
    /// The method name, upper case.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    fn matches(self, m: &Method) -> bool {
        m.as_str() == self.as_str()
    }
}

/// One routed method and path.
#[derive(Debug, Clone, Copy)]
pub struct Route<E> {
    /// The method.
    pub verb: Verb,
    /// The path pattern, `{name}` for a parameter (OpenAPI syntax).
    pub path: &'static str,
    /// What answers it.
    pub endpoint: E,
    /// What the caller must present.
    pub access: crate::auth::Access,
    /// True when the route changes state: every method but GET, and GET
    /// routes that import or change data (compat paths). A cookie session
    /// needs its CSRF token on these.
    pub changes_state: bool,
}

/// The result of routing a request.
pub enum RouteMatch<E> {
    /// A route answers this method and path.
    Found {
        /// The route.
        route: Route<E>,
        /// Path parameters.
        params: Vec<(String, String)>,
    },
    /// The path exists but not with this method.
    MethodNotAllowed {
        /// The path pattern.
        path: &'static str,
        /// Value for the `Allow` header.
        allow: HeaderValue,
    },
    /// No such path.
    NotFound,
}

/// The router.
pub struct Router<E> {
    paths: matchit::Router<usize>,
    entries: Vec<(&'static str, Vec<Route<E>>, HeaderValue)>,
}

impl<E: Copy> Router<E> {
    /// Builds the router from a route table. Panics on a malformed or
    /// conflicting pattern: the table is part of the program.
    pub fn new(routes: &[Route<E>]) -> Self {
        let mut entries: Vec<(&'static str, Vec<Route<E>>, HeaderValue)> = Vec::new();
        for route in routes {
            match entries.iter_mut().find(|(p, _, _)| *p == route.path) {
                Some((_, rs, _)) => rs.push(*route),
                None => entries.push((route.path, vec![*route], HeaderValue::from_static(""))),
            }
        }
        let mut paths = matchit::Router::new();
        for (i, (path, routes, allow)) in entries.iter_mut().enumerate() {
            let names: Vec<&str> = routes.iter().map(|r| r.verb.as_str()).collect();
            *allow = HeaderValue::from_str(&names.join(", ")).expect("method names are ASCII");
            paths.insert(*path, i).unwrap_or_else(|e| panic!("route {path}: {e}"));
        }
        Self { paths, entries }
    }

    /// Routes a request.
    pub fn find(&self, method: &Method, path: &str) -> RouteMatch<E> {
        let Ok(m) = self.paths.at(path) else {
            return RouteMatch::NotFound;
        };
        let (pattern, routes, allow) = &self.entries[*m.value];
        match routes.iter().find(|r| r.verb.matches(method)) {
            Some(route) => RouteMatch::Found {
                route: *route,
                params: m.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
            None => RouteMatch::MethodNotAllowed { path: pattern, allow: allow.clone() },
        }
    }
}
