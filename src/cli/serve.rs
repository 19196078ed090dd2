//! `atrest serve` (the AWS endpoint in the foreground) and `atrest env` (the shell lines
//! that point every AWS tool at it).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Global;
use crate::endpoint::listener::TlsFiles;
use crate::endpoint::ServeOptions;

/// The endpoint's default address: the port local AWS stand-ins conventionally use.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4566";

/// Where and how the endpoint listens (`atrest serve`, `atrest up`).
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Address to listen on (port 0: any free port). Beyond loopback it needs
    /// --tls-cert and --tls-key.
    #[arg(long, env = "ATREST_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS (required beyond loopback).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ListenArgs {
    /// The same settings as `atrest serve` arguments (for `atrest up`).
    pub fn endpoint_args(&self) -> Vec<String> {
        let mut args = vec!["--listen".to_string(), self.listen.to_string()];
        if let (Some(c), Some(k)) = (&self.tls_cert, &self.tls_key) {
            args.extend([
                "--tls-cert".to_string(),
                c.display().to_string(),
                "--tls-key".to_string(),
                k.display().to_string(),
            ]);
        }
        args
    }

    pub fn options(&self) -> ServeOptions {
        ServeOptions {
            listen: self.listen,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        }
    }
}

/// Runs the endpoint in the foreground; the exit code.
pub fn run(g: &Global, opts: ServeOptions) -> i32 {
    match crate::endpoint::run(&g.layout(), &g.kmsd_socket(), opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("atrest: {e}");
            1
        }
    }
}

/// Why `atrest env` cannot print.
#[derive(Debug, thiserror::Error)]
enum EnvError {
    #[error("no AWS endpoint runs for {home}: start it with `atrest up` ({path} is missing or names nothing that answers)", home = .home.display(), path = .path.display())]
    NoEndpoint { home: PathBuf, path: PathBuf },
    #[error(transparent)]
    Key(#[from] crate::s3::auth::AuthError),
    #[error(transparent)]
    Config(#[from] kmsd::client::site::ConfigError),
}

/// Single-quotes a value for POSIX shells.
fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

fn env_lines(g: &Global) -> Result<String, EnvError> {
    let layout = g.layout();
    let url_file = layout.endpoint_url_file();
    let url = crate::endpoint::listener::live_endpoint(&url_file).ok_or(EnvError::NoEndpoint {
        home: layout.root.clone(),
        path: url_file,
    })?;
    let key = crate::s3::auth::own_access_key(&g.kmsd_socket(), g.act_as.as_deref())?;
    let region = kmsd::client::site::SiteConfig::load(&layout.config())?.region;
    let mut out = String::new();
    for (name, value) in [
        ("AWS_ENDPOINT_URL", url.as_str()),
        ("AWS_ACCESS_KEY_ID", key.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", key.secret_access_key.as_str()),
        ("AWS_DEFAULT_REGION", region.as_str()),
    ] {
        out.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    // Credentials from elsewhere would win over these or be sent with them.
    out.push_str("unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_PROFILE\n");
    out.push_str(&format!("# atrest: signing as {}\n", key.principal));
    Ok(out)
}

/// `atrest env`: prints the lines to `eval`.
pub fn env(g: &Global) -> i32 {
    match env_lines(g) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("atrest env: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("a/b+c"), "'a/b+c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
