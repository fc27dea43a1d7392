//! The one HTTP client of a process, shared by every SDK client and by the
//! direct `StopTask` ([`super::ecs_direct`]): the SDK's connection pool
//! (`aws_smithy_http_client::pool`: hyper 1, rustls with AWS-LC, ALPN
//! offering `h2` and `http/1.1`, the proxy rules of `HTTP(S)_PROXY` /
//! `ALL_PROXY` / `NO_PROXY`), built once and put on the
//! [`aws_config::SdkConfig`]. One pool and one trust store, loaded once, at
//! init; per host either one HTTP/2 connection that every call shares once
//! it is open (a burst of calls before any connection to the host is open
//! still opens one each, all negotiating `h2`: `make bench` section 7, and
//! why `run-api` opens one to ECS at init, `ECS_CONNECTIONS_AT_INIT`), or
//! HTTP/1.1 connections, optionally bounded, with calls queued for a free
//! one.

use aws_smithy_http_client::pool::{Client, ConnectionPool};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls;
use aws_smithy_runtime::client::auth::no_auth::{NoAuthScheme, NO_AUTH_SCHEME_ID};
use aws_smithy_runtime::client::identity::no_auth::NoAuthIdentityResolver;
use aws_smithy_runtime::client::identity::IdentityCache;
use aws_smithy_runtime::client::retries::strategy::NeverRetryStrategy;
use aws_smithy_runtime_api::client::auth::static_resolver::StaticAuthSchemeOptionResolver;
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
use aws_smithy_types::timeout::TimeoutConfig;

/// The process's HTTP client: one connection pool, at most
/// `max_connections_per_host` live connections to one host (`None`:
/// unbounded; calls beyond it wait for a connection, HTTP/1.1 carries one
/// call at a time).
pub fn shared_client(max_connections_per_host: Option<usize>) -> Result<SharedHttpClient, String> {
    let mut builder = ConnectionPool::builder().proxy_config(ProxyConfig::from_env());
    builder.set_max_connections_per_host(max_connections_per_host);
    let pool = builder
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
        .build_https()
        .map_err(|e| format!("the HTTP connection pool: {e}"))?;
    let client = Client::new(&pool).map_err(|e| format!("the HTTP client: {e}"))?;
    Ok(SharedHttpClient::new(client))
}

/// The settings the SDK's orchestrator gives the HTTP client for a call
/// under `timeouts`: its connect and read timeouts.
pub(crate) fn connector_settings(timeouts: Option<&TimeoutConfig>) -> HttpConnectorSettings {
    let mut builder = HttpConnectorSettings::builder();
    builder.set_connect_timeout(timeouts.and_then(|t| t.connect_timeout()));
    builder.set_read_timeout(timeouts.and_then(|t| t.read_timeout()));
    builder.build()
}

/// The connector `client` gives the SDK for calls under `timeouts`: the same
/// pool (the client caches its connectors by their settings). Built now, so a
/// first use at init loads the trust store there.
///
/// `HttpClient::http_connector` takes the runtime components of an
/// operation, of which a connector reads only the sleep and time source; the
/// other components an operation must have are stand-ins never called.
pub(crate) fn connector_of(
    client: &SharedHttpClient,
    timeouts: Option<&TimeoutConfig>,
    sleep: Option<aws_smithy_async::rt::sleep::SharedAsyncSleep>,
    time: Option<aws_smithy_async::time::SharedTimeSource>,
) -> Result<SharedHttpConnector, String> {
    use aws_smithy_runtime_api::client::http::HttpClient;
    let components = RuntimeComponentsBuilder::new("mwaa-stop direct StopTask")
        .with_auth_scheme_option_resolver(Some(StaticAuthSchemeOptionResolver::new(vec![NO_AUTH_SCHEME_ID])))
        .with_endpoint_resolver(Some(aws_smithy_runtime_api::client::endpoint::SharedEndpointResolver::new(
            aws_smithy_runtime::client::orchestrator::endpoints::StaticUriEndpointResolver::uri("http://unused"),
        )))
        .with_auth_scheme(NoAuthScheme::new())
        .with_identity_cache(Some(IdentityCache::no_cache()))
        .with_identity_resolver(NO_AUTH_SCHEME_ID, NoAuthIdentityResolver::new())
        .with_retry_strategy(Some(NeverRetryStrategy::new()))
        .with_sleep_impl(sleep)
        .with_time_source(time)
        .build()
        .map_err(|e| format!("runtime components: {e}"))?;
    Ok(client.http_connector(&connector_settings(timeouts), &components))
}
