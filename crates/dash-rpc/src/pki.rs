//! The cluster's PKI: one CA made at `dash server` init, a certificate per node issued from the
//! node's CSR (its private key never leaves it), and join tokens that carry the CA's
//! fingerprint so a joining node pins the CA before it trusts anything the master says
//! (the same idea as Swarm's SWMTKN).
//!
//! A node certificate names the node in its subject CN, its role (`master` or `worker`) in the
//! subject O, and carries two DNS names: `<role>.dash.internal` (what a peer checks when it
//! dials "a master" or "a worker") and `<node>.node.dash.internal` (that one node).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// The DNS name in every master certificate; workers dial masters as this name.
pub const MASTER_NAME: &str = "master.dash.internal";
/// The DNS name in every worker certificate.
pub const WORKER_NAME: &str = "worker.dash.internal";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{what}: {why}")]
    Invalid { what: &'static str, why: String },
}

fn invalid(what: &'static str, why: impl ToString) -> PkiError {
    PkiError::Invalid {
        what,
        why: why.to_string(),
    }
}

/// A node's role, as written into its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "master" => Some(Role::Master),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }

    fn dns_name(self) -> &'static str {
        match self {
            Role::Master => MASTER_NAME,
            Role::Worker => WORKER_NAME,
        }
    }
}

/// Writes a secret (a key, a token) to `path`: mode 0600 from the first byte, synced, then
/// renamed into place, so a reader never sees it partial or readable by others.
pub fn write_private(path: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// SHA-256 of a certificate's DER, lower-case hex: what a join token pins.
pub fn fingerprint(cert_pem: &str) -> Result<String, PkiError> {
    let der = pem_der(cert_pem, "CERTIFICATE")?;
    Ok(hex(&Sha256::digest(der)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A serial in hex without leading zero bytes: the form [`identity`] reads and
/// [`Ca::sign`] records. Serials stored by earlier versions could keep a leading `00`.
pub fn canonical_serial(serial: &str) -> &str {
    let mut s = serial;
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    s
}

fn pem_der(pem: &str, label: &'static str) -> Result<Vec<u8>, PkiError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| invalid("PEM", format!("not a PEM {label}: {e}")))?;
    if parsed.label != label {
        return Err(invalid(
            "PEM",
            format!("a {} where a {label} was expected", parsed.label),
        ));
    }
    Ok(parsed.contents)
}

/// The cluster CA: its certificate and signing key, both PEM.
pub struct Ca {
    pub cert_pem: String,
    key_pem: String,
}

impl Ca {
    /// A new CA, valid for ten years.
    pub fn create(cluster: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("dash cluster CA ({cluster})"));
        dn.push(DnType::OrganizationName, "dash");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn load(cert_pem: String, key_pem: String) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(&key_pem)?;
        Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Ca { cert_pem, key_pem })
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn fingerprint(&self) -> Result<String, PkiError> {
        fingerprint(&self.cert_pem)
    }

    /// Signs `csr_pem` for `node` in `role`, valid for `validity`. Only the CSR's public key is
    /// used (after its self-signature is checked): subject and names are the CA's choice.
    pub fn sign(
        &self,
        csr_pem: &str,
        node: &str,
        role: Role,
        validity: std::time::Duration,
    ) -> Result<IssuedCert, PkiError> {
        self.sign_with_serial(csr_pem, node, role, &[], validity, rand_serial())
    }

    /// Signs `csr_pem` for master `node`'s admin API: a master's certificate that also names
    /// `names` (IP addresses become IP names), so that a client checking names against the
    /// address it dialled (curl, a browser with the CA) accepts it too.
    pub fn sign_admin(
        &self,
        csr_pem: &str,
        node: &str,
        names: &[String],
        validity: std::time::Duration,
    ) -> Result<IssuedCert, PkiError> {
        self.sign_with_serial(csr_pem, node, Role::Master, names, validity, rand_serial())
    }

    fn sign_with_serial(
        &self,
        csr_pem: &str,
        node: &str,
        role: Role,
        extra_names: &[String],
        validity: std::time::Duration,
        serial: [u8; 16],
    ) -> Result<IssuedCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| invalid("csr_pem", format!("not a valid certificate request: {e}")))?;
        let key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)?;
        let mut names = vec![
            role.dns_name().to_string(),
            format!("{node}.node.dash.internal"),
        ];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)
            .map_err(|e| invalid("node", format!("{node:?} is not usable in a DNS name: {e}")))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node);
        dn.push(DnType::OrganizationName, role.as_str());
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial.to_vec()));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        let validity = Duration::try_from(validity)
            .map_err(|e| invalid("validity", format!("{validity:?}: {e}")))?;
        // Backdated a little for clocks a bit behind, by at most a tenth of the lifetime so
        // that renewing at two thirds of [not_before, not_after] stays in the future.
        params.not_before = now - (validity / 10_i32).min(Duration::minutes(5));
        params.not_after = now + validity;
        let cert = params.signed_by(&csr.public_key, &issuer)?;
        Ok(IssuedCert {
            pem: cert.pem(),
            // As a peer's certificate will show it: DER keeps integers minimal, so a serial
            // whose first random byte is zero is one byte shorter than the bytes it came from.
            serial: identity(cert.der())?.serial,
            not_after_s: params.not_after.unix_timestamp(),
        })
    }
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub pem: String,
    /// The serial number, lower-case hex.
    pub serial: String,
    pub not_after_s: i64,
}

/// 16 random bytes (OS-seeded CSPRNG) with the top bit clear: a positive DER integer.
fn rand_serial() -> [u8; 16] {
    let mut s: [u8; 16] = rand::random();
    s[0] &= 0x7f;
    s
}

/// A new key pair for `node` and a CSR for it: (key PEM, CSR PEM). The key stays on the node.
pub fn new_csr(node: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// What Dash reads from a peer's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node: String,
    pub role: Role,
    pub serial: String,
    pub not_after_s: i64,
}

/// Reads the node name, role and serial from a DER certificate (already verified by TLS).
pub fn identity(der: &[u8]) -> Result<PeerIdentity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| invalid("certificate", format!("unreadable: {e}")))?;
    let subject = cert.subject();
    let node = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| invalid("certificate", "no subject CN"))?
        .to_string();
    let role = subject
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .and_then(Role::parse)
        .ok_or_else(|| invalid("certificate", "no dash role in the subject O"))?;
    Ok(PeerIdentity {
        node,
        role,
        serial: canonical_serial(&hex(cert.raw_serial())).to_string(),
        not_after_s: cert.validity().not_after.timestamp(),
    })
}

/// A join token: `DASH1-<CA fingerprint>-<id>.<secret>`. The masters store the id with a hash
/// of the secret; the joining node checks the CA's fingerprint before it sends anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: String,
    pub id: String,
    pub secret: String,
}

impl JoinToken {
    /// A new token for the CA with `ca_fingerprint`.
    pub fn generate(ca_fingerprint: &str) -> Result<JoinToken, PkiError> {
        let random = hex(&rand_serial()) + &hex(&rand_serial());
        Ok(JoinToken {
            ca_fingerprint: ca_fingerprint.to_string(),
            id: random[..8].to_string(),
            secret: random[8..40].to_string(),
        })
    }

    pub fn parse(s: &str) -> Result<JoinToken, PkiError> {
        let bad = |why: &str| {
            invalid(
                "token",
                format!(
                    "{why}; a join token looks like DASH1-<64 hex>-<8 hex>.<32 hex> (from `dash token create`)"
                ),
            )
        };
        let rest = s
            .trim()
            .strip_prefix("DASH1-")
            .ok_or_else(|| bad("it does not start with DASH1-"))?;
        let (fp, idsecret) = rest
            .split_once('-')
            .ok_or_else(|| bad("no CA fingerprint"))?;
        let (id, secret) = idsecret
            .split_once('.')
            .ok_or_else(|| bad("no id.secret part"))?;
        let is_hex = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex(fp, 64) {
            return Err(bad("the CA fingerprint is not 64 hex digits"));
        }
        if !is_hex(id, 8) || !is_hex(secret, 32) {
            return Err(bad("the id or secret has the wrong length"));
        }
        Ok(JoinToken {
            ca_fingerprint: fp.to_ascii_lowercase(),
            id: id.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    /// What the masters store instead of the secret.
    pub fn secret_hash(&self) -> String {
        hash_secret(&self.secret)
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DASH1-{}-{}.{}",
            self.ca_fingerprint, self.id, self.secret
        )
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// When a certificate should be renewed: at two thirds of its lifetime (seconds since the
/// epoch), or now (0) if it cannot be read. Masters and workers renew by this one rule.
pub fn renew_at(cert_pem: &str) -> i64 {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
        return 0;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&pem.contents) else {
        return 0;
    };
    let from = cert.validity().not_before.timestamp();
    let to = cert.validity().not_after.timestamp();
    from + (to - from) * 2 / 3
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_node_and_role_and_only_uses_the_csr_key() {
        let ca = Ca::create("test").unwrap();
        let (_key, csr) = new_csr("evil-asks-for-this-name").unwrap();
        let issued = ca
            .sign(
                &csr,
                "w1",
                Role::Worker,
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
        let der = pem_der(&issued.pem, "CERTIFICATE").unwrap();
        let id = identity(&der).unwrap();
        assert_eq!(id.node, "w1");
        assert_eq!(id.role, Role::Worker);
        assert_eq!(id.serial, issued.serial);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!((id.not_after_s - now - 3600).abs() < 5, "{id:?}");
        // Reloaded from its PEM files, the CA signs too.
        let again = Ca::load(ca.cert_pem.clone(), ca.key_pem().to_string()).unwrap();
        assert_eq!(again.fingerprint().unwrap(), ca.fingerprint().unwrap());
    }

    #[test]
    fn serials_differ() {
        let ca = Ca::create("test").unwrap();
        let (_k, csr) = new_csr("n").unwrap();
        let a = ca
            .sign(&csr, "n", Role::Master, std::time::Duration::from_secs(60))
            .unwrap();
        let b = ca
            .sign(&csr, "n", Role::Master, std::time::Duration::from_secs(60))
            .unwrap();
        assert_ne!(a.serial, b.serial);
    }

    #[test]
    fn a_serial_with_leading_zero_bytes_is_recorded_as_peers_will_present_it() {
        // One certificate in 128 has a zero first byte; DER drops it from the encoding.
        let ca = Ca::create("test").unwrap();
        let (_k, csr) = new_csr("n").unwrap();
        let mut serial = [0x5a_u8; 16];
        serial[0] = 0;
        serial[1] = 0;
        let issued = ca
            .sign_with_serial(
                &csr,
                "n",
                Role::Worker,
                &[],
                std::time::Duration::from_secs(60),
                serial,
            )
            .unwrap();
        let der = pem_der(&issued.pem, "CERTIFICATE").unwrap();
        assert_eq!(identity(&der).unwrap().serial, issued.serial);
        assert_eq!(issued.serial, "5a".repeat(14));
        assert_eq!(canonical_serial(&hex(&serial)), issued.serial);
        assert_eq!(canonical_serial("00"), "00");
    }

    #[test]
    fn garbage_csr_is_a_clear_error() {
        let ca = Ca::create("test").unwrap();
        for bad in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            let e = ca
                .sign(bad, "n", Role::Worker, std::time::Duration::from_secs(60))
                .unwrap_err()
                .to_string();
            assert!(e.contains("csr_pem"), "{e}");
        }
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        let t = JoinToken::generate(&"ab".repeat(32)).unwrap();
        let s = t.to_string();
        assert_eq!(JoinToken::parse(&s).unwrap(), t);
        assert!(s.starts_with("DASH1-abab"));
        for (bad, why) in [
            ("", "DASH1-"),
            ("SWMTKN-1-abc", "DASH1-"),
            ("DASH1-abc-12345678.0123", "fingerprint"),
            (&format!("DASH1-{}-1234.00", "a".repeat(64)), "length"),
        ] {
            let e = JoinToken::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
