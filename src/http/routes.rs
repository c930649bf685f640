//! The one table of kterm's HTTP routes. Each module registers its routes through [`Routes`],
//! which either adds them to actix (serving) or only writes down their method and path
//! (recording): the OpenAPI document is checked against the recorded list, so a route cannot
//! be served without being documented (see [`super::openapi`]). A known path asked with
//! another method is 405 with `Allow`, not 404.

use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder};
use serde_json::json;

/// A route's method and full path (`/api/v1/sessions/{id}`).
pub type RouteKey = (Method, String);

/// Where routes go: actix's service config, or only the list.
pub struct Routes<'a> {
    cfg: Option<&'a mut web::ServiceConfig>,
    prefix: String,
    seen: Vec<RouteKey>,
    /// Routes to serve, by path in the order first named: added to actix as one resource each.
    resources: Vec<(String, Vec<(Method, actix_web::Route)>)>,
}

impl<'a> Routes<'a> {
    fn new(cfg: Option<&'a mut web::ServiceConfig>, prefix: &str) -> Routes<'a> {
        Routes { cfg, prefix: prefix.to_string(), seen: Vec::new(), resources: Vec::new() }
    }

    pub fn get<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::GET, path, web::get().to(handler))
    }

    pub fn post<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::POST, path, web::post().to(handler))
    }

    pub fn put<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::PUT, path, web::put().to(handler))
    }

    pub fn delete<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::DELETE, path, web::delete().to(handler))
    }

    /// Routes under `prefix` (an actix scope when serving).
    pub fn scope(&mut self, prefix: &str, register: impl FnOnce(&mut Routes<'_>)) -> &mut Self {
        let full = format!("{}{prefix}", self.prefix);
        let mut seen = Vec::new();
        match self.cfg.as_deref_mut() {
            Some(cfg) => {
                cfg.service(web::scope(prefix).configure(|inner| {
                    let mut routes = Routes::new(Some(inner), &full);
                    register(&mut routes);
                    seen = routes.finish();
                }));
            }
            None => {
                let mut routes = Routes::new(None, &full);
                register(&mut routes);
                seen = routes.finish();
            }
        }
        self.seen.extend(seen);
        self
    }

    fn add(&mut self, method: Method, path: &str, route: actix_web::Route) -> &mut Self {
        self.seen.push((method.clone(), format!("{}{path}", self.prefix)));
        if self.cfg.is_some() {
            match self.resources.iter_mut().find(|(p, _)| p == path) {
                Some((_, routes)) => routes.push((method, route)),
                None => self.resources.push((path.to_string(), vec![(method, route)])),
            }
        }
        self
    }

    /// Adds the collected resources to actix; returns what was registered.
    fn finish(mut self) -> Vec<RouteKey> {
        if let Some(cfg) = self.cfg.take() {
            for (path, routes) in std::mem::take(&mut self.resources) {
                let allow: Vec<&str> = routes.iter().map(|(m, _)| m.as_str()).collect();
                let allow = allow.join(", ");
                let mut resource = web::resource(path);
                for (_, route) in routes {
                    resource = resource.route(route);
                }
                cfg.service(resource.default_service(web::to(move || {
                    let allow = allow.clone();
                    async move { method_not_allowed(&allow) }
                })));
            }
        }
        self.seen
    }
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, allow)).json(json!({
        "error": {"code": "method_not_allowed", "message": format!("this path allows {allow}")}
    }))
}

/// Every route of the API and the health endpoints (the UI's pages are served apart).
fn all(routes: &mut Routes<'_>) {
    routes
        .get("/healthz", super::api::healthz)
        .get("/readyz", super::api::readyz)
        .get("/metrics", super::api::metrics);
    routes.scope("/api/v1", |routes| {
        super::api::routes(routes);
        super::files::routes(routes);
        super::agent::routes(routes);
        super::login::routes(routes);
        super::sandboxes::routes(routes);
        super::recording::routes(routes);
        super::admin::routes(routes);
        super::openapi::routes(routes);
    });
}

/// Adds every route to actix.
pub fn serve(cfg: &mut web::ServiceConfig) {
    let mut routes = Routes::new(Some(cfg), "");
    all(&mut routes);
    routes.finish();
}

/// The method and path of every route [`serve`] adds.
pub fn registered() -> Vec<RouteKey> {
    let mut routes = Routes::new(None, "");
    all(&mut routes);
    routes.finish()
}
