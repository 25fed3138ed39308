//! The demo's key ring: AES-256-GCM keys that encrypt and authenticate its cookies and
//! tokens, each use under its own purpose (as ASP.NET Core Data Protection does), so a
//! value minted for one purpose is refused for another.
//!
//! Misconfigured, every process makes its own key, or (`first-use:`) each replica that
//! finds no ring on its first use makes one; configured, all share a ring in one
//! directory, created once by whichever replica starts first.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use rand::RngExt;
use serde::{Deserialize, Serialize};

pub struct KeyRing {
    /// The newest key protects; every key unprotects.
    keys: Vec<(u32, Aes256Gcm)>,
    /// Signs tokens (Ed25519), published in the key set.
    signing: (String, SigningKey),
    /// Read from a directory, not made by this process alone.
    shared: bool,
}

#[derive(Serialize, Deserialize)]
struct RingFile {
    keys: Vec<KeyFile>,
    signing: SigningFile,
}

impl RingFile {
    fn fresh() -> Self {
        let (id, key) = fresh_key();
        let (kid, seed) = fresh_signing();
        RingFile {
            keys: vec![KeyFile { id, key: STANDARD.encode(key) }],
            signing: SigningFile { kid, seed: STANDARD.encode(seed) },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SigningFile {
    kid: String,
    seed: String,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    id: u32,
    key: String,
}

const FILE_NAME: &str = "keyring.json";

/// The app's keys: a ring it holds from the start, or one it makes on first use.
pub enum Keys {
    Ready(KeyRing),
    /// Misconfigured (`--keys first-use:DIR`): on its first use the replica looks for a
    /// ring in `dir`; finding none, it makes one under a name of its own, and it reads the
    /// directory only that once. Replicas whose first uses come together each find none
    /// and each make their own, as frameworks that create their first key lazily do
    /// against an empty store; a replica that starts after another used its ring shares it.
    FirstUse { dir: PathBuf, ring: OnceLock<KeyRing> },
}

/// How long a first use takes between finding no ring and writing its own.
const FIRST_USE_WINDOW: Duration = Duration::from_millis(400);

impl Keys {
    pub fn ring(&self) -> &KeyRing {
        match self {
            Keys::Ready(ring) => ring,
            Keys::FirstUse { dir, ring } => ring.get_or_init(|| {
                KeyRing::first_use(dir).unwrap_or_else(|err| {
                    println!("key ring in {}: {err}; keys of this process only", dir.display());
                    KeyRing::in_memory()
                })
            }),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Keys::Ready(ring) if ring.shared => "shared directory",
            Keys::Ready(_) => "this process only",
            Keys::FirstUse { .. } => "made on first use in a shared directory",
        }
    }
}

impl KeyRing {
    /// A ring of one fresh key, held only by this process.
    pub fn in_memory() -> Self {
        let (id, key) = fresh_key();
        let (kid, seed) = fresh_signing();
        Self {
            keys: vec![(id, cipher(&key))],
            signing: (kid, SigningKey::from_bytes(&seed)),
            shared: false,
        }
    }

    /// The ring stored in `dir`, created there if no replica has yet.
    pub fn shared(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            // A random name, not the pid: replicas in containers are all pid 1.
            let tmp = dir.join(format!(".{FILE_NAME}.{:016x}", rand::rng().random::<u64>()));
            std::fs::write(&tmp, serde_json::to_vec(&RingFile::fresh())?)?;
            // Linking fails if another replica won the race; theirs is complete, use it.
            match std::fs::hard_link(&tmp, &path) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
            let _ = std::fs::remove_file(&tmp);
        }
        Self::read(&path)
    }

    /// The first ring found in `dir`, or, when there is none, a ring of this replica's
    /// own written there after the window a real first use takes (see `Keys::FirstUse`).
    fn first_use(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("ring-")))
            .collect();
        found.sort();
        if let Some(first) = found.first() {
            return Self::read(first);
        }
        std::thread::sleep(FIRST_USE_WINDOW);
        let path = dir.join(format!("ring-{:016x}.json", rand::rng().random::<u64>()));
        std::fs::write(&path, serde_json::to_vec(&RingFile::fresh())?)?;
        Self::read(&path)
    }

    fn read(path: &Path) -> std::io::Result<Self> {
        let ring: RingFile = serde_json::from_slice(&std::fs::read(path)?)?;
        let mut keys = Vec::new();
        for key in ring.keys {
            let bytes = STANDARD.decode(&key.key).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
            keys.push((key.id, cipher));
        }
        if keys.is_empty() {
            return Err(std::io::Error::new(ErrorKind::InvalidData, format!("{} holds no key", path.display())));
        }
        let seed: [u8; 32] = STANDARD
            .decode(&ring.signing.seed)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidData, "the signing key is not 32 bytes"))?;
        Ok(Self {
            keys,
            signing: (ring.signing.kid, SigningKey::from_bytes(&seed)),
            shared: true,
        })
    }

    /// A JWT (EdDSA) for `subject`, valid for an hour.
    pub fn sign_token(&self, subject: &str, now: u64) -> String {
        let (kid, key) = &self.signing;
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
        let claims = serde_json::json!({ "sub": subject, "iat": now, "exp": now + 3600 });
        let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = key.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The token's subject, if this ring's key signed it and it has not expired.
    pub fn verify_token(&self, token: &str, now: u64) -> Option<String> {
        let (kid, key) = &self.signing;
        let (signed, signature) = token.rsplit_once('.')?;
        let (header, claims) = signed.split_once('.')?;
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header["kid"].as_str() != Some(kid.as_str()) {
            return None;
        }
        let signature = Signature::try_from(URL_SAFE_NO_PAD.decode(signature).ok()?.as_slice()).ok()?;
        key.verifying_key().verify(signed.as_bytes(), &signature).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        (claims["exp"].as_u64()? > now).then(|| claims["sub"].as_str().map(str::to_owned))?
    }

    /// The public key set (JWKS) that verifies this ring's tokens.
    pub fn jwks(&self) -> serde_json::Value {
        let (kid, key) = &self.signing;
        serde_json::json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        }]})
    }

    /// Encrypts `plaintext` for `purpose`: `base64url(key id | nonce | ciphertext)`.
    pub fn protect(&self, purpose: &str, plaintext: &[u8]) -> String {
        let (id, cipher) = self.keys.last().expect("a key ring always has a key");
        let nonce_bytes: [u8; 12] = rand::rng().random();
        let nonce = Nonce::from(nonce_bytes);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: purpose.as_bytes() })
            .expect("AES-GCM encrypts any message this small");
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext, if `token` was protected for `purpose` by a key of this ring.
    pub fn unprotect(&self, purpose: &str, token: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() < 4 + 12 + 16 {
            return None;
        }
        let id = u32::from_be_bytes(bytes[..4].try_into().ok()?);
        let nonce_bytes: [u8; 12] = bytes[4..16].try_into().ok()?;
        let (_, cipher) = self.keys.iter().find(|(k, _)| *k == id)?;
        cipher
            .decrypt(&Nonce::from(nonce_bytes), Payload { msg: &bytes[16..], aad: purpose.as_bytes() })
            .ok()
    }
}

fn fresh_key() -> (u32, [u8; 32]) {
    let mut rng = rand::rng();
    (rng.random(), rng.random())
}

fn fresh_signing() -> (String, [u8; 32]) {
    let mut rng = rand::rng();
    (format!("{:016x}", rng.random::<u64>()), rng.random())
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(key).expect("32 bytes is an AES-256 key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_use(dir: &Path) -> Keys {
        Keys::FirstUse { dir: dir.to_owned(), ring: OnceLock::new() }
    }

    #[test]
    fn first_uses_together_make_two_rings_and_one_after_another_shares_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (first_use(dir.path()), first_use(dir.path()));
        std::thread::scope(|s| {
            s.spawn(|| a.ring());
            s.spawn(|| b.ring());
        });
        let token = a.ring().protect("auth", b"alice");
        assert_eq!(b.ring().unprotect("auth", &token), None, "each made its own ring");

        let later = tempfile::tempdir().unwrap();
        let (first, second) = (first_use(later.path()), first_use(later.path()));
        let token = first.ring().protect("auth", b"alice");
        assert_eq!(second.ring().unprotect("auth", &token).as_deref(), Some(&b"alice"[..]), "the second found the first's ring");
    }

    #[test]
    fn protects_per_purpose_and_refuses_tampering() {
        let ring = KeyRing::in_memory();
        let token = ring.protect("auth", b"alice");
        assert_eq!(ring.unprotect("auth", &token).as_deref(), Some(&b"alice"[..]));
        assert_eq!(ring.unprotect("session", &token), None);
        let mut tampered = token.clone();
        tampered.replace_range(10..11, if &token[10..11] == "A" { "B" } else { "A" });
        assert_eq!(ring.unprotect("auth", &tampered), None);
    }

    #[test]
    fn tokens_verify_with_the_ring_that_signed_them_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (KeyRing::shared(dir.path()).unwrap(), KeyRing::shared(dir.path()).unwrap());
        let token = a.sign_token("alice", 1000);
        assert_eq!(b.verify_token(&token, 1001).as_deref(), Some("alice"));
        assert_eq!(b.verify_token(&token, 5000), None, "expired");
        assert_eq!(KeyRing::in_memory().verify_token(&token, 1001), None, "another process's key");
        assert_eq!(a.jwks(), b.jwks());
        assert_ne!(a.jwks(), KeyRing::in_memory().jwks());
    }

    #[test]
    fn separate_processes_do_not_understand_each_other_unless_they_share_a_ring() {
        let (a, b) = (KeyRing::in_memory(), KeyRing::in_memory());
        assert_eq!(b.unprotect("auth", &a.protect("auth", b"x")), None);
        let dir = tempfile::tempdir().unwrap();
        let (c, d) = (KeyRing::shared(dir.path()).unwrap(), KeyRing::shared(dir.path()).unwrap());
        assert_eq!(d.unprotect("auth", &c.protect("auth", b"x")).as_deref(), Some(&b"x"[..]));
    }
}
