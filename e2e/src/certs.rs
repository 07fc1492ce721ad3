//! Certificates for one lab's control plane, made with the openssl CLI:
//! a CA, the apiserver's serving certificate, an admin client certificate
//! (`system:masters`) and the service-account signing key. ECDSA P-256 keys
//! keep generation well under a second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process;

const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// Paths of the generated PKI files.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Directory holding all files.
    pub dir: PathBuf,
    /// CA certificate (also the client CA).
    pub ca_crt: PathBuf,
    /// CA key.
    pub ca_key: PathBuf,
    /// Apiserver serving certificate.
    pub apiserver_crt: PathBuf,
    /// Apiserver serving key.
    pub apiserver_key: PathBuf,
    /// Admin client certificate (`CN=knet-lab-admin, O=system:masters`).
    pub admin_crt: PathBuf,
    /// Admin client key.
    pub admin_key: PathBuf,
    /// Service-account signing key.
    pub sa_key: PathBuf,
    /// Service-account public key.
    pub sa_pub: PathBuf,
}

// === impl Pki ===

impl Pki {
    /// Generates a fresh PKI in `dir`. `sans` are the apiserver's subject
    /// alternative names, e.g. `IP:127.0.0.1`, `DNS:kubernetes`.
    pub async fn generate(dir: &Path, sans: &[String]) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let p = |n: &str| dir.join(n);
        let pki = Self {
            dir: dir.to_owned(),
            ca_crt: p("ca.crt"),
            ca_key: p("ca.key"),
            apiserver_crt: p("apiserver.crt"),
            apiserver_key: p("apiserver.key"),
            admin_crt: p("admin.crt"),
            admin_key: p("admin.key"),
            sa_key: p("sa.key"),
            sa_pub: p("sa.pub"),
        };
        ecparam(&pki.ca_key).await?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            s(&pki.ca_key)?,
            "-days",
            "3650",
            "-subj",
            "/CN=knet-lab-ca",
            "-out",
            s(&pki.ca_crt)?,
        ])
        .await?;
        let server_ext = format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
            sans.join(",")
        );
        pki.sign("apiserver", "/CN=kube-apiserver", &server_ext)
            .await?;
        pki.sign(
            "admin",
            "/CN=knet-lab-admin/O=system:masters",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        )
        .await?;
        ecparam(&pki.sa_key).await?;
        openssl(&[
            "ec",
            "-in",
            s(&pki.sa_key)?,
            "-pubout",
            "-out",
            s(&pki.sa_pub)?,
        ])
        .await?;
        Ok(pki)
    }

    async fn sign(&self, name: &str, subj: &str, ext: &str) -> Result<()> {
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        let crt = self.dir.join(format!("{name}.crt"));
        let extf = self.dir.join(format!("{name}.ext"));
        std::fs::write(&extf, ext)?;
        ecparam(&key).await?;
        openssl(&[
            "req",
            "-new",
            "-key",
            s(&key)?,
            "-subj",
            subj,
            "-out",
            s(&csr)?,
        ])
        .await?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr)?,
            "-CA",
            s(&self.ca_crt)?,
            "-CAkey",
            s(&self.ca_key)?,
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            s(&extf)?,
            "-out",
            s(&crt)?,
        ])
        .await?;
        Ok(())
    }
}

async fn ecparam(out: &Path) -> Result<()> {
    // PKCS#8, which every consumer (apiserver, rustls) reads.
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        s(out)?,
    ])
    .await
}

async fn openssl(args: &[&str]) -> Result<()> {
    let mut argv = vec!["openssl"];
    argv.extend_from_slice(args);
    process::run(&argv, OPENSSL_TIMEOUT)
        .await?
        .ok()
        .with_context(|| format!("openssl {}", args.first().copied().unwrap_or_default()))?;
    Ok(())
}

fn s(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}
