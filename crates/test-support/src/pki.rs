//! A certificate authority made at run time, for the tests that speak TLS (gRPC with and
//! without client certificates, certificate rotation, PostgreSQL over TLS).

/// A CA and the certificates it signs.
#[derive(Debug)]
pub struct Pki {
    /// The CA certificate, PEM: what a client or server trusts.
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    /// A new CA with this common name.
    ///
    /// # Panics
    /// When key generation or signing fails (never with the ring provider).
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("self-signed CA");
        Self { ca_pem: ca.pem(), issuer: rcgen::Issuer::new(params, key) }
    }

    /// A certificate for `common_name`, valid for `localhost` and 127.0.0.1, and its key, PEM.
    ///
    /// # Panics
    /// When key generation or signing fails (never with the ring provider).
    pub fn leaf(&self, common_name: &str) -> (String, String) {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = rcgen::CertificateParams::new(names).expect("leaf parameters");
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        (cert.pem(), key.serialize_pem())
    }
}
