//! Throw-away certificate authorities and keys for one local control plane.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files the apiserver reads, and the admin credentials for the kubeconfig.
pub(crate) struct Pki {
    /// CA that signed the apiserver's serving certificate (the kubeconfig trusts it).
    pub serving_ca_pem: String,
    /// Client certificate of the admin user (CN admin, O system:masters).
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

impl Pki {
    /// Creates the serving CA and certificate (SANs localhost and 127.0.0.1), the client
    /// CA and the admin client certificate, and the service-account key pair, and writes
    /// what the apiserver needs into `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Self> {
        let serving_ca = ca("dataforest-testenv serving CA")?;
        let serving_key = KeyPair::generate()?;
        let mut serving =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &serving_ca)?;

        let client_ca = ca("dataforest-testenv client CA")?;
        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &client_ca)?;

        let service_account = KeyPair::generate()?;

        let files = [
            ("apiserver.crt", serving_cert.pem()),
            ("apiserver.key", serving_key.serialize_pem()),
            ("client-ca.crt", client_ca.pem()),
            ("sa.pub", service_account.public_key_pem()),
            ("sa.key", service_account.serialize_pem()),
        ];
        for (name, pem) in files {
            std::fs::write(dir.join(name), pem).with_context(|| format!("writing {name}"))?;
        }
        Ok(Self {
            serving_ca_pem: serving_ca.pem(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
        })
    }
}

fn ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}
