//! TLS on the server's one port: the CLI and a worker over https with a private CA, a worker
//! refused without a client certificate when the server requires one (mTLS), and plain http
//! or an untrusted certificate refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    worker_cert: PathBuf,
    worker_key: PathBuf,
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a worker client certificate.
fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "drover test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |sans: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.extended_key_usages = vec![usage];
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let (server_cert, server_key) = leaf(sans, ExtendedKeyUsagePurpose::ServerAuth, "server");
    let (worker_cert, worker_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, "w1");
    let write = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        worker_cert: write("worker.pem", &worker_cert),
        worker_key: write("worker.key", &worker_key),
    }
}

/// A TLS server requiring worker certificates; returns it with its https URL.
fn start_tls_server(data: &Path, pki: &Pki) -> (Proc, String) {
    provide_admin_token(data);
    let store = format!("sqlite://{}", data.join("drover.db").display());
    let p = |p: &PathBuf| p.display().to_string();
    let (cert, key, ca) = (p(&pki.server_cert), p(&pki.server_key), p(&pki.ca));
    let args = [
        "server",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store,
        "--heartbeat",
        "200ms",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ];
    let (proc, line) = spawn_until("tls server", &args, "listening on");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .expect("an https URL in the listening line")
        .to_string();
    (proc, url)
}

/// The CLI against `url`, trusting `ca` when given.
fn drover(url: &str, ca: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut c = common::drover();
    c.args(args).env("DROVER_SERVER", url).stdin(Stdio::null());
    match ca {
        Some(ca) => c.env("DROVER_CA_CERT", ca),
        None => c.env_remove("DROVER_CA_CERT"),
    };
    c.output().expect("run drover")
}

fn spawn_worker(url: &str, name: &str, tls: &[&str], stderr: &Path) -> Proc {
    let err = std::fs::File::create(stderr).unwrap();
    let child = common::drover()
        .args(["worker", "--server", url, "--name", name, "--slots", "2"])
        .args(tls)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn worker");
    Proc {
        child,
        name: name.into(),
    }
}

#[test]
fn https_with_a_private_ca_and_worker_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (_server, url) = start_tls_server(dir.path(), &pki);
    let ca = pki.ca.display().to_string();
    let (wc, wk) = (
        pki.worker_cert.display().to_string(),
        pki.worker_key.display().to_string(),
    );
    let certified = ["--ca-cert", &ca, "--tls-cert", &wc, "--tls-key", &wk];
    let _w1 = spawn_worker(&url, "w1", &certified, &dir.path().join("w1.err"));
    let anonymous_err = dir.path().join("w2.err");
    let _w2 = spawn_worker(&url, "w2", &["--ca-cert", &ca], &anonymous_err);

    // The certified worker registers and runs a task submitted over https.
    wait_for(Duration::from_secs(30), "w1 to register over TLS", || {
        let out = drover(&url, Some(&pki.ca), &["workers", "-o", "json"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("\"w1\"")
            .then_some(())
    });
    let out = drover(
        &url,
        Some(&pki.ca),
        &["submit", "--wait", "--", "echo", "over-tls"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("over-tls"));

    // The worker without a certificate is refused, and says why.
    wait_for(Duration::from_secs(30), "w2 to be refused", || {
        let err = std::fs::read_to_string(&anonymous_err).unwrap_or_default();
        err.contains("client certificate").then_some(())
    });
    let listed = drover(&url, Some(&pki.ca), &["workers", "-o", "json"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("\"w2\""));

    // Without the CA the server's certificate is not trusted; plain http is not served.
    let untrusted = drover(&url, None, &["list"]);
    assert!(!untrusted.status.success());
    let plain = url.replacen("https://", "http://", 1);
    assert!(!drover(&plain, Some(&pki.ca), &["list"]).status.success());
}
