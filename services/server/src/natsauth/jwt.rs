//! The NATS JWT (v2) wire format, as much of it as the auth callout needs:
//! decode and verify the server's authorization request, encode the
//! authorization response and the user claims it carries.
//!
//! A NATS JWT is `base64url(header).base64url(claims).base64url(sig)` with
//! header `{"typ":"JWT","alg":"ed25519-nkey"}`, the signature an ed25519
//! signature by the issuer's NKey over the first two parts, and `jti` the
//! base32 SHA-512/256 of the claims with an empty `jti` (nats-io/jwt v2,
//! `claims.go`).

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha512_256};

/// The only algorithm NATS v2 JWTs use.
const ALGORITHM: &str = "ed25519-nkey";

/// Largest token accepted for decoding (the server's own limit is 1 MiB).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Why a token could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts, or not JSON.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The signature does not verify against the issuer's key.
    #[error("JWT signature does not verify against its issuer {0}")]
    BadSignature(String),
    /// Signing failed (a key that cannot sign).
    #[error("cannot sign a JWT: {0}")]
    Sign(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    typ: String,
    alg: String,
}

/// The registered claims every NATS JWT carries, in nats-io/jwt's field
/// order (the `jti` hash is computed over this JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClaimsData {
    /// Audience.
    #[serde(default, rename = "aud", skip_serializing_if = "String::is_empty")]
    pub audience: String,
    /// Expiry (Unix seconds; 0: none).
    #[serde(default, rename = "exp", skip_serializing_if = "is_zero")]
    pub expires: i64,
    /// Content hash (set by [`encode`]).
    #[serde(default, rename = "jti", skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Issued at (Unix seconds; set by [`encode`]).
    #[serde(default, rename = "iat", skip_serializing_if = "is_zero")]
    pub issued_at: i64,
    /// Issuer public NKey (set by [`encode`]).
    #[serde(default, rename = "iss", skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Not before (Unix seconds; 0: none).
    #[serde(default, rename = "nbf", skip_serializing_if = "is_zero")]
    pub not_before: i64,
    /// Subject public NKey.
    #[serde(default, rename = "sub", skip_serializing_if = "String::is_empty")]
    pub subject: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Signs `claims` (whose registered part is `data`, `nats` the rest) with
/// `issuer`: sets `iss`, `iat` and `jti`, answers the token.
pub fn encode(
    mut data: ClaimsData,
    nats: Value,
    issuer: &nkeys::KeyPair,
    now: i64,
) -> Result<String, JwtError> {
    data.issuer = issuer.public_key();
    data.issued_at = now;
    data.id = String::new();
    let hashed = serde_json::to_vec(&data).expect("claims data serializes");
    data.id = BASE32_NOPAD.encode(&Sha512_256::digest(&hashed));
    let mut claims = serde_json::to_value(&data).expect("claims data serializes");
    claims
        .as_object_mut()
        .expect("claims data is an object")
        .insert("nats".into(), nats);
    let header = Header {
        typ: "JWT".into(),
        alg: ALGORITHM.into(),
    };
    let signed = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(&serde_json::to_vec(&header).expect("header serializes")),
        BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims).expect("claims serialize")),
    );
    let sig = issuer
        .sign(signed.as_bytes())
        .map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{signed}.{}", BASE64URL_NOPAD.encode(&sig)))
}

/// A decoded, signature-checked token: its registered claims and its
/// `nats` section.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// `aud`, `sub`, `iss`, …
    pub data: ClaimsData,
    /// The claim-type-specific part.
    pub nats: Value,
}

/// Decodes `token` and verifies its signature against its own `iss` (the
/// caller checks that the issuer is one it trusts).
pub fn decode(token: &str) -> Result<Decoded, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed(format!(
            "{} bytes, over the {MAX_TOKEN_LEN}-byte limit",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let part = |what: &str, p: &str| {
        BASE64URL_NOPAD
            .decode(p.as_bytes())
            .map_err(|e| JwtError::Malformed(format!("{what}: {e}")))
    };
    let header: Header = serde_json::from_slice(&part("header", h)?)
        .map_err(|e| JwtError::Malformed(format!("header: {e}")))?;
    if header.alg != ALGORITHM {
        return Err(JwtError::Malformed(format!(
            "algorithm {:?}, expected {ALGORITHM}",
            header.alg
        )));
    }
    let mut claims: Value = serde_json::from_slice(&part("claims", c)?)
        .map_err(|e| JwtError::Malformed(format!("claims: {e}")))?;
    let nats = claims
        .as_object_mut()
        .and_then(|o| o.remove("nats"))
        .unwrap_or(Value::Null);
    let data: ClaimsData =
        serde_json::from_value(claims).map_err(|e| JwtError::Malformed(format!("claims: {e}")))?;
    let sig = part("signature", s)?;
    let key = nkeys::KeyPair::from_public_key(&data.issuer)
        .map_err(|e| JwtError::Malformed(format!("iss {:?}: {e}", data.issuer)))?;
    key.verify(&token.as_bytes()[..h.len() + 1 + c.len()], &sig)
        .map_err(|_| JwtError::BadSignature(data.issuer.clone()))?;
    Ok(Decoded { data, nats })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_token_round_trips_and_its_signature_is_checked() {
        let account = nkeys::KeyPair::new_account();
        let user = nkeys::KeyPair::new_user();
        let token = encode(
            ClaimsData {
                subject: user.public_key(),
                audience: "PN".into(),
                ..Default::default()
            },
            json!({"type": "user", "version": 2}),
            &account,
            1_700_000_000,
        )
        .unwrap();
        let d = decode(&token).unwrap();
        assert_eq!(d.data.issuer, account.public_key());
        assert_eq!(d.data.subject, user.public_key());
        assert_eq!(d.data.issued_at, 1_700_000_000);
        assert_eq!(d.data.id.len(), 52, "base32 of 32 bytes");
        assert_eq!(d.nats["type"], "user");

        // One changed byte in the claims breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut claims = BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap();
        let at = claims.iter().position(|b| *b == b'P').unwrap();
        claims[at] = b'Q';
        parts[1] = BASE64URL_NOPAD.encode(&claims);
        assert!(matches!(
            decode(&parts.join(".")),
            Err(JwtError::BadSignature(_))
        ));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.??.**",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(matches!(decode(t), Err(JwtError::Malformed(_))), "{t:.20}");
        }
    }
}
