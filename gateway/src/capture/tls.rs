//! TLS interception: the node CA and the leaf certificates it signs, one per SNI, on the fly.
//!
//! The CA is loaded from `tls.caCert`/`tls.caKey`, or generated on first start (key file mode
//! 0600). Workloads trust it through their stack's usual knob (docs/trust.md). Leaves share one
//! P-256 key generated at start (signing a leaf is then a single ECDSA signature) and are cached
//! per SNI until shortly before they expire.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};

/// A leaf is replaced this long before it expires.
const LEAF_RENEW_MARGIN: Duration = Duration::from_secs(3600);
/// Leaves start being valid this long ago, for clocks slightly behind ours.
const LEAF_BACKDATE: Duration = Duration::from_secs(3600);
/// The CA is valid for ten years.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// At most this many SNIs are cached (each entry is a few KiB).
const MAX_CACHED_LEAVES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node CA {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("cannot mint a certificate for {sni:?}: {message}")]
    Leaf { sni: String, message: String },
}

/// The node CA.
pub struct NodeCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    /// The CA certificate, PEM, as served on the admin port.
    pub cert_pem: String,
    pub cert_path: PathBuf,
    leaf_key: KeyPair,
    leaf_signing: Arc<dyn rustls::sign::SigningKey>,
}

impl fmt::Debug for NodeCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

fn ca_err(path: &Path, message: impl fmt::Display) -> Error {
    Error::Ca {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

impl NodeCa {
    /// Loads the CA from `cert`/`key`, or creates both when neither exists.
    pub fn load_or_create(cert: &Path, key: &Path) -> Result<NodeCa, Error> {
        let (cert_pem, key_pem) = match (cert.exists(), key.exists()) {
            (true, true) => {
                check_private(key)?;
                (
                    std::fs::read_to_string(cert).map_err(|e| ca_err(cert, e))?,
                    std::fs::read_to_string(key).map_err(|e| ca_err(key, e))?,
                )
            }
            (false, false) => {
                let (c, k) = generate_ca()?;
                write_file(cert, c.as_bytes(), 0o644)?;
                write_file(key, k.as_bytes(), 0o600)?;
                tracing::info!(cert = %cert.display(), "generated a new node CA");
                (c, k)
            }
            (true, false) => return Err(ca_err(key, "certificate exists but its key does not")),
            (false, true) => return Err(ca_err(cert, "key exists but its certificate does not")),
        };
        let key_pair = key_pair_from_pem(&key_pem).map_err(|e| ca_err(key, e))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key_pair).map_err(|e| ca_err(cert, e))?;
        let ca_der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e: rustls_pki_types::pem::Error| ca_err(cert, e))?;
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| ca_err(key, e))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signing = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| ca_err(key, e))?;
        Ok(NodeCa {
            issuer,
            ca_der,
            cert_pem,
            cert_path: cert.to_owned(),
            leaf_key,
            leaf_signing,
        })
    }

    /// Mints a leaf for `sni`, valid for `ttl`.
    pub fn mint(&self, sni: &str, ttl: Duration) -> Result<Arc<CertifiedKey>, Error> {
        let err = |m: &dyn fmt::Display| Error::Leaf {
            sni: sni.to_string(),
            message: m.to_string(),
        };
        let mut params = CertificateParams::default();
        let name = rcgen::string::Ia5String::try_from(sni.to_string()).map_err(|e| err(&e))?;
        params.subject_alt_names = vec![SanType::DnsName(name)];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, sni);
        params.distinguished_name = dn;
        let now = SystemTime::now();
        params.not_before = (now - LEAF_BACKDATE).into();
        params.not_after = (now + ttl).into();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&fastrand::u64(..).to_be_bytes()));
        let cert = params.signed_by(&self.leaf_key, &self.issuer).map_err(|e| err(&e))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone(), self.ca_der.clone()],
            self.leaf_signing.clone(),
        )))
    }
}

/// Reads a CA key in any of the PEM forms CA tooling writes: PKCS#8 (`PRIVATE KEY`), SEC1
/// (`EC PRIVATE KEY`: Helm's `genPrivateKey "ecdsa"`, openssl ecparam) and PKCS#1
/// (`RSA PRIVATE KEY`: Helm's `genCA`, older cert-manager). ring signs only from PKCS#8, so the
/// other two are wrapped in a PKCS#8 envelope first.
fn key_pair_from_pem(pem: &str) -> Result<KeyPair, String> {
    use rustls_pki_types::pem::PemObject as _;
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("not a PEM private key: {e}"))?;
    let pkcs8 = match &der {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Sec1(k) => {
            let inner = k.secret_sec1_der();
            // The curve is named in the SEC1 parameters; P-256 and P-384 are what ring signs.
            let curve = if contains(inner, OID_P384) { OID_P384 } else { OID_P256 };
            pkcs8_envelope(&[OID_EC_PUBLIC_KEY, curve].concat(), inner)
        }
        PrivateKeyDer::Pkcs1(k) => pkcs8_envelope(&[OID_RSA_ENCRYPTION, &[0x05, 0x00]].concat(), k.secret_pkcs1_der()),
        _ => return Err("unsupported private key format".into()),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| format!("unusable CA key: {e}"))
}

/// DER of the object identifiers (tag and length included).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }
fn pkcs8_envelope(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(der_tlv(0x30, algorithm));
    body.extend(der_tlv(0x04, key));
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Refuses a CA key that anyone but its owner can read: whoever reads it can mint
/// certificates every workload of the node trusts.
fn check_private(key: &Path) -> Result<(), Error> {
    crate::keyfile::check_private(key).map_err(|m| ca_err(key, m))
}

fn generate_ca() -> Result<(String, String), Error> {
    let e = |m: rcgen::Error| Error::Ca {
        path: PathBuf::new(),
        message: m.to_string(),
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(e)?;
    let mut params = CertificateParams::default();
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Tollgate node CA {}", host.trim()));
    dn.push(DnType::OrganizationName, "Tollgate");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = (now - LEAF_BACKDATE).into();
    params.not_after = (now + CA_VALIDITY).into();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&fastrand::u64(..).to_be_bytes()));
    let cert = params.self_signed(&key).map_err(e)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    crate::keyfile::create(path, data, mode).map_err(|e| ca_err(path, e))
}

/// Which names a leaf may be minted for (the intercept hostnames of the current config).
pub type Governed = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// rustls hook: the leaf for the ClientHello's SNI, from the cache or freshly minted, for
/// governed names only: whatever a workload sends as SNI, the node CA signs nothing else.
pub struct LeafResolver {
    ca: Arc<NodeCa>,
    ttl: Duration,
    governed: Governed,
    cache: Mutex<HashMap<String, (Arc<CertifiedKey>, Instant)>>,
}

impl fmt::Debug for LeafResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafResolver")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LeafResolver {
    pub fn new(ca: Arc<NodeCa>, ttl: Duration, governed: Governed) -> LeafResolver {
        LeafResolver {
            ca,
            ttl: ttl.max(LEAF_RENEW_MARGIN * 2),
            governed,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn leaf(&self, sni: &str) -> Result<Arc<CertifiedKey>, Error> {
        let sni = sni.to_ascii_lowercase();
        let sni = sni.as_str();
        if !(self.governed)(sni) {
            return Err(Error::Leaf {
                sni: sni.to_string(),
                message: "not an intercept hostname of any provider".into(),
            });
        }
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((key, renew_at)) = cache.get(sni) {
                if *renew_at > now {
                    return Ok(key.clone());
                }
            }
        }
        let key = self.ca.mint(sni, self.ttl)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_LEAVES {
            cache.retain(|_, (_, renew_at)| *renew_at > now);
            if cache.len() >= MAX_CACHED_LEAVES {
                cache.clear();
            }
        }
        cache.insert(sni.to_string(), (key.clone(), now + self.ttl - LEAF_RENEW_MARGIN));
        Ok(key)
    }
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?;
        match self.leaf(sni) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(error = %e, "no certificate for the client");
                None
            }
        }
    }
}

/// The server side of interception: leaves by SNI, ALPN h2 then http/1.1.
pub fn server_config(resolver: Arc<LeafResolver>) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_with_a_private_key_file_and_leaves_verify() {
        use rustls::client::danger::ServerCertVerifier as _;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("tollgate-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let ca = NodeCa::load_or_create(&cert, &key).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let again = NodeCa::load_or_create(&cert, &key).unwrap();
        assert_eq!(ca.cert_pem, again.cert_pem, "the CA is loaded, not regenerated");

        let leaf = again.mint("api.openai.com", Duration::from_secs(3600 * 24)).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.ca_der.clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("api.openai.com").unwrap();
        verifier
            .verify_server_cert(
                &leaf.cert[0],
                &leaf.cert[1..],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("leaf verifies against the node CA");
        let other = rustls::pki_types::ServerName::try_from("api.anthropic.com").unwrap();
        assert!(verifier
            .verify_server_cert(&leaf.cert[0], &[], &other, &[], rustls::pki_types::UnixTime::now())
            .is_err());

        let resolver = LeafResolver::new(
            Arc::new(again),
            Duration::from_secs(86_400),
            Box::new(|name| name == "api.openai.com"),
        );
        let a = resolver.leaf("api.openai.com").unwrap();
        let b = resolver.leaf("API.openai.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "cached");
        let e = resolver.leaf("www.example.com").unwrap_err().to_string();
        assert!(e.contains("not an intercept hostname"), "{e}");

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = NodeCa::load_or_create(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("readable by group or others"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn half_a_ca_is_an_error() {
        let dir = std::env::temp_dir().join(format!("tollgate-ca-half-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), "x").unwrap();
        let e = NodeCa::load_or_create(&dir.join("ca.crt"), &dir.join("ca.key")).unwrap_err();
        assert!(e.to_string().contains("ca.key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cas_with_sec1_and_pkcs1_keys_load_and_mint() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("tollgate-ca-forms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (cert_pem, key_pem) in [
            (
                include_str!("testdata/ca-sec1.crt"),
                include_str!("testdata/ca-sec1.key"),
            ),
            (
                include_str!("testdata/ca-pkcs1.crt"),
                include_str!("testdata/ca-pkcs1.key"),
            ),
        ] {
            let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
            std::fs::write(&cert, cert_pem).unwrap();
            std::fs::write(&key, key_pem).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
            let ca = NodeCa::load_or_create(&cert, &key).unwrap_or_else(|e| panic!("{}: {e}", &key_pem[..31]));
            let leaf = ca.mint("api.openai.com", Duration::from_secs(60)).unwrap();
            assert_eq!(leaf.cert.len(), 2, "leaf and CA");
            std::fs::remove_file(&key).unwrap();
        }
        assert!(key_pair_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
