use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::WebConfig;
use super::listen::parse_listen_address;

/// How long a client may take to complete the TLS handshake before its
/// connection is closed: without a limit, connections that never start TLS
/// would pile up until file descriptors run out.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1 connection may sit without sending complete request
/// headers. hyper runs this timer while a keep-alive connection is idle too,
/// so it must be longer than the scraper's own idle timeout (Prometheus
/// closes idle connections after 5 minutes): then the client always closes
/// first and a scrape never races the server's close.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(6 * 60);

/// Serves `app` on every listen address until `shutdown` completes, with TLS
/// and basic auth when a web config file is given. Binding errors and an
/// invalid web config are returned before anything is served.
pub async fn serve(
    app: Router,
    listen: &[String],
    web_config_file: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let web_config = match web_config_file {
        Some(f) => WebConfig::load(f)?,
        None => WebConfig::default(),
    };
    let tls = super::tls::acceptor(&web_config, web_config_file)?;
    let app = super::auth::wrap(app, &web_config);

    let mut listeners = Vec::new();
    for addr in listen {
        let sock = parse_listen_address(addr)?;
        let l = TcpListener::bind(sock)
            .await
            .map_err(|e| anyhow::anyhow!("listening on {addr}: {e}"))?;
        tracing::info!(address = %l.local_addr()?, tls = tls.is_some(), "listening");
        listeners.push(l);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut tasks = Vec::new();
    for l in listeners {
        let app = app.clone();
        let tls = tls.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = l.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: pause, go on.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = stop.changed() => break,
                };
                let app = app.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    // The peer's address, for `trusted_proxy` (axum's
                    // `ConnectInfo` extractor reads it too).
                    let app = tower::ServiceBuilder::new()
                        .map_request(move |mut r: axum::http::Request<hyper::body::Incoming>| {
                            r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                            r
                        })
                        .service(app);
                    let service = TowerToHyperService::new(app);
                    let mut builder = Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT);
                    let result = match tls {
                        Some(acceptor) => match tokio::time::timeout(
                            TLS_HANDSHAKE_TIMEOUT,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(s)) => {
                                builder
                                    .serve_connection_with_upgrades(TokioIo::new(s), service)
                                    .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(peer = %peer, "TLS handshake timed out");
                                return;
                            }
                        },
                        None => {
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// A TLS acceptor shared by the listeners.
pub(super) type Acceptor = Arc<tokio_rustls::TlsAcceptor>;
