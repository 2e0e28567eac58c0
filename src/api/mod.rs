//! The route table and the handlers, one module per resource. Each route
//! declares its access (open, API key, or key + token with roles); the guard
//! in `pipeline` enforces it before any handler runs. Handlers are thin:
//! parse the request into typed values, call one domain or storage function,
//! map the result to a response.

mod apikeys;
mod attention;
mod audit_log;
mod context;
mod manage;
mod ops;
/// Query-string and list-cursor parsing; public so `fuzz/` can reach it.
pub mod params;
mod password;
mod pipeline;
mod receive;
mod send;
mod session;
pub mod slow_reads;
mod users;

use hyper::Request;
use hyper::body::Incoming;

use crate::auth::Access;
use crate::domain::user::Role;
use crate::http::router::Verb;
use crate::http::{ApiError, Response};

pub use context::RequestContext;

/// A route of this appliance's table.
pub type Route = crate::http::router::Route<Endpoint>;

pub use ops::{OPENAPI_JSON, OpsSnapshot, readiness};
pub use slow_reads::SlowReads;

/// Every endpoint the appliance answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Endpoint {
    Health,
    Healthz,
    Readyz,
    Version,
    Metrics,
    OpenApi,
    Jwks,
    Login,
    Logout,
    CurrentUser,
    ChangeOwnPassword,
    AdminSignIn,
    AdminSession,
    AdminSignOut,
    PostMessages,
    ListMessages,
    MessageDetail,
    RetryMessage,
    SendStats,
    SendFailures,
    SendJsons,
    SendJson,
    PostErrorReport,
    ListErrorReports,
    ErrorReportDetail,
    ListQuarantine,
    CreateUser,
    EditUser,
    DeactivateUser,
    ListUsers,
    GetUser,
    UserSessions,
    EndSession,
    UnlockUser,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    ListAudit,
    VerifyAudit,
    PauseDelivery,
    ResumeDelivery,
    DeliveryState,
    Attention,
    BulkRetry,
    EffectiveConfig,
    Backup,
    AdminPage,
}

const ALL: &[Role] = &[Role::Admin, Role::Backoffice, Role::Esight, Role::User];
const SENDERS: &[Role] = &[Role::Admin, Role::Backoffice];
const REPORTERS: &[Role] = &[Role::Admin, Role::Esight];
const ADMINS: &[Role] = &[Role::Admin];
const PAGE: &[Role] = &[Role::Admin, Role::Backoffice];

const fn route(verb: Verb, path: &'static str, endpoint: Endpoint, access: Access) -> Route {
    Route { verb, path, endpoint, access, changes_state: !matches!(verb, Verb::Get) }
}

/// A GET route that changes state (the compat import by file name): CSRF
/// applies to it as to a POST.
const fn changing(route: Route) -> Route {
    Route { changes_state: true, ..route }
}

use Access::{Key, Open, Roles};
use Endpoint as E;
use Verb::{Delete, Get, Patch, Post};

/// The route table. `tests/api/openapi.rs` keeps it and `assets/openapi.json`
/// in step.
pub const ROUTES: &[Route] = &[
    route(Get, "/health", E::Health, Open),
    route(Get, "/healthz", E::Healthz, Open),
    route(Get, "/readyz", E::Readyz, Open),
    route(Get, "/version", E::Version, Open),
    route(Get, "/metrics", E::Metrics, Open),
    route(Get, "/openapi.json", E::OpenApi, Open),
    route(Get, "/.well-known/jwks.json", E::Jwks, Open),
    route(Post, "/login", E::Login, Key),
    route(Post, "/logout", E::Logout, Roles(ALL)),
    route(Get, "/user", E::CurrentUser, Roles(ALL)),
    route(Post, "/user/password", E::ChangeOwnPassword, Roles(ALL)),
    route(Get, "/admin/", E::AdminPage, Open),
    route(Get, "/admin/{*path}", E::AdminPage, Open),
    route(Post, "/admin/session", E::AdminSignIn, Open),
    route(Get, "/admin/session", E::AdminSession, Roles(PAGE)),
    route(Delete, "/admin/session", E::AdminSignOut, Roles(PAGE)),
    route(Post, "/api/v1/service/send/messages", E::PostMessages, Roles(SENDERS)),
    route(Get, "/api/v1/service/send/messages", E::ListMessages, Roles(SENDERS)),
    route(Get, "/api/v1/service/send/messages/{id}", E::MessageDetail, Roles(SENDERS)),
    route(Post, "/api/v1/service/send/messages/{id}/retry", E::RetryMessage, Roles(SENDERS)),
    route(Get, "/api/v1/service/send/stats", E::SendStats, Roles(SENDERS)),
    route(Get, "/api/v1/service/send/failures", E::SendFailures, Roles(SENDERS)),
    route(Post, "/api/v1/service/send/sendJsons", E::SendJsons, Roles(SENDERS)),
    changing(route(Get, "/api/v1/service/send/sendJson/{file_name}", E::SendJson, Roles(SENDERS))),
    route(Post, "/api/v1/service/receive/errorjson", E::PostErrorReport, Roles(REPORTERS)),
    route(Get, "/api/v1/service/receive/errors", E::ListErrorReports, Roles(SENDERS)),
    route(Get, "/api/v1/service/receive/errors/{id}", E::ErrorReportDetail, Roles(SENDERS)),
    route(Get, "/api/v1/service/receive/quarantine", E::ListQuarantine, Roles(SENDERS)),
    route(Post, "/api/v1/management/users/user", E::CreateUser, Roles(ADMINS)),
    route(Patch, "/api/v1/management/users/user/edit/{id}", E::EditUser, Roles(ADMINS)),
    route(Delete, "/api/v1/management/users/user/deactivate/{id}", E::DeactivateUser, Roles(ADMINS)),
    route(Get, "/api/v1/management/users", E::ListUsers, Roles(ADMINS)),
    route(Get, "/api/v1/management/users/user/{id}", E::GetUser, Roles(ADMINS)),
    route(Get, "/api/v1/management/users/user/{id}/sessions", E::UserSessions, Roles(ADMINS)),
    route(Post, "/api/v1/management/users/user/{id}/unlock", E::UnlockUser, Roles(ADMINS)),
    route(Delete, "/api/v1/management/sessions/{jti}", E::EndSession, Roles(ADMINS)),
    route(Post, "/api/v1/management/apikeys", E::CreateApiKey, Roles(ADMINS)),
    route(Get, "/api/v1/management/apikeys", E::ListApiKeys, Roles(ADMINS)),
    route(Delete, "/api/v1/management/apikeys/{id}", E::RevokeApiKey, Roles(ADMINS)),
    route(Get, "/api/v1/management/audit", E::ListAudit, Roles(ADMINS)),
    route(Get, "/api/v1/management/audit/verify", E::VerifyAudit, Roles(ADMINS)),
    route(Post, "/api/v1/management/delivery/pause", E::PauseDelivery, Roles(ADMINS)),
    route(Post, "/api/v1/management/delivery/resume", E::ResumeDelivery, Roles(ADMINS)),
    route(Get, "/api/v1/management/delivery", E::DeliveryState, Roles(ADMINS)),
    route(Get, "/api/v1/management/attention", E::Attention, Roles(PAGE)),
    route(Post, "/api/v1/management/messages/retry", E::BulkRetry, Roles(ADMINS)),
    route(Get, "/api/v1/management/config", E::EffectiveConfig, Roles(ADMINS)),
    route(Get, "/api/v1/management/backup", E::Backup, Roles(ADMINS)),
];

/// Runs the handler for `endpoint`.
pub async fn dispatch(
    endpoint: Endpoint,
    ctx: RequestContext,
    req: Request<Incoming>,
) -> Result<Response, ApiError> {
    let query = req.uri().query().map(str::to_string);
    let query = query.as_deref();
    match endpoint {
        E::Health => Ok(ops::health()),
        E::Healthz => Ok(ops::healthz()),
        E::Readyz => ops::readyz(&ctx).await,
        E::Version => Ok(ops::version()),
        E::Metrics => ops::metrics(&ctx).await,
        E::OpenApi => Ok(ops::openapi()),
        E::Jwks => Ok(session::jwks(&ctx)),
        E::Login => session::login(ctx, req).await,
        E::Logout => session::logout(ctx).await,
        E::CurrentUser => session::current_user(&ctx),
        E::ChangeOwnPassword => password::change_own(ctx, req).await,
        E::AdminSignIn => session::admin_sign_in(ctx, req).await,
        E::AdminSession => session::admin_session(&ctx),
        E::AdminSignOut => session::admin_sign_out(ctx).await,
        E::PostMessages => send::post_messages(ctx, req).await,
        E::ListMessages => send::list(ctx, query).await,
        E::MessageDetail => send::detail(ctx).await,
        E::RetryMessage => send::retry(ctx).await,
        E::SendStats => send::stats(ctx).await,
        E::SendFailures => send::failures(ctx, query).await,
        E::SendJsons | E::SendJson => send::import_inbox(ctx, req).await,
        E::PostErrorReport => receive::post_report(ctx, req).await,
        E::ListErrorReports => receive::list(ctx, query).await,
        E::ErrorReportDetail => receive::detail(ctx).await,
        E::ListQuarantine => receive::quarantine(ctx, query).await,
        E::CreateUser => users::create(ctx, req).await,
        E::EditUser => users::edit(ctx, req).await,
        E::DeactivateUser => users::deactivate(ctx).await,
        E::ListUsers => users::list(ctx, query).await,
        E::GetUser => users::get(ctx).await,
        E::UserSessions => users::sessions(ctx).await,
        E::EndSession => users::end_session(ctx).await,
        E::UnlockUser => users::unlock(ctx).await,
        E::CreateApiKey => apikeys::create(ctx, req).await,
        E::ListApiKeys => apikeys::list(ctx).await,
        E::RevokeApiKey => apikeys::revoke(ctx).await,
        E::ListAudit => audit_log::list(ctx, query).await,
        E::VerifyAudit => audit_log::verify(ctx).await,
        E::PauseDelivery => manage::set_paused(ctx, true).await,
        E::ResumeDelivery => manage::set_paused(ctx, false).await,
        E::DeliveryState => Ok(manage::delivery_state(&ctx)),
        E::Attention => attention::attention(ctx).await,
        E::BulkRetry => manage::bulk_retry(ctx, req).await,
        E::EffectiveConfig => Ok(manage::config(&ctx)),
        E::Backup => manage::backup(ctx).await,
        E::AdminPage => crate::admin_ui::serve(ctx.param("path")),
    }
}

pub use apikeys::new_record as new_api_key_record;
