//! AWS Signature Version 4 for the ECS API. The server verifies, when it is given credentials
//! (`--credentials FILE`): every request must be signed by a known access key, with a valid
//! signature over its method, path, signed headers and body, dated within 15 minutes of now.
//! The CLI signs ([`sign`]) with the same computation, so the two cannot drift apart.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{ApiError, ErrorKind};

/// How far a request's `X-Amz-Date` may be from the server's clock.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Access key id → secret access key.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, String>,
}

impl Credentials {
    /// Reads a JSON object `{"ACCESS_KEY_ID": "SECRET", ...}`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let keys: HashMap<String, String> = serde_json::from_str(text)
            .map_err(|e| format!("expected a JSON object of access key id to secret: {e}"))?;
        if keys.is_empty() {
            return Err("the credentials file names no access key".into());
        }
        Ok(Self { keys })
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so new_from_slice cannot fail here.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn unrecognized(message: &str) -> ApiError {
    ApiError::new(ErrorKind::UnrecognizedClientException, message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidSignatureException, message)
}

/// Checks one request's signature. `headers` are (lowercase name, value) pairs.
pub fn verify(
    credentials: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    now_epoch_secs: i64,
) -> Result<(), ApiError> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let authorization = header("authorization")
        .ok_or_else(|| unrecognized("Missing Authentication Token: the request is not signed"))?;
    let rest = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| invalid("only AWS4-HMAC-SHA256 signatures are accepted"))?;
    let mut parts: HashMap<&str, &str> = HashMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            parts.insert(k, v);
        }
    }
    let (credential, signed_headers, signature) = match (
        parts.get("Credential"),
        parts.get("SignedHeaders"),
        parts.get("Signature"),
    ) {
        (Some(c), Some(h), Some(s)) => (*c, *h, *s),
        _ => {
            return Err(invalid(
                "the Authorization header lacks Credential, SignedHeaders or Signature",
            ));
        }
    };
    let mut scope = credential.split('/');
    let access_key = scope.next().unwrap_or_default();
    let scope_rest: Vec<&str> = scope.collect();
    let secret = credentials
        .keys
        .get(access_key)
        .ok_or_else(|| unrecognized("The security token included in the request is invalid."))?;
    let [date, region, service, terminator] = scope_rest.as_slice() else {
        return Err(invalid(
            "Credential scope must be DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if *terminator != "aws4_request" {
        return Err(invalid("Credential scope must end in aws4_request"));
    }
    let amz_date = header("x-amz-date").ok_or_else(|| invalid("the request has no X-Amz-Date"))?;
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| invalid(format!("X-Amz-Date \"{amz_date}\" is not YYYYMMDDTHHMMSSZ")))?;
    if (signed_at - now_epoch_secs).abs() > MAX_SKEW_SECS {
        return Err(invalid(format!(
            "Signature expired: {amz_date} is more than 15 minutes from the server's time"
        )));
    }
    if !amz_date.starts_with(date) {
        return Err(invalid("the Credential date does not match X-Amz-Date"));
    }

    let expected = compute_signature(
        secret,
        &Scope {
            date,
            region,
            service,
        },
        amz_date,
        &Canonical {
            method,
            path,
            query,
            headers,
            signed_headers,
            body,
        },
    )?;
    if same_secret(&expected, signature) {
        Ok(())
    } else {
        Err(invalid(
            "The request signature we calculated does not match the signature you provided. \\
             Check your AWS Secret Access Key and signing method.",
        ))
    }
}

/// The credential scope of a signature.
struct Scope<'a> {
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

/// What a signature covers.
struct Canonical<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    /// (lowercase name, value) pairs; those in `signed_headers` are signed.
    headers: &'a [(String, String)],
    /// `;`-separated lowercase header names, sorted.
    signed_headers: &'a str,
    body: &'a [u8],
}

/// The hex signature of a request.
fn compute_signature(
    secret: &str,
    scope: &Scope<'_>,
    amz_date: &str,
    request: &Canonical<'_>,
) -> Result<String, ApiError> {
    let mut canonical_headers = String::new();
    for name in request.signed_headers.split(';') {
        let value = request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| invalid(format!("signed header {name} is missing")))?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{}\n{}",
        request.method,
        request.path,
        request.query,
        request.signed_headers,
        hex::encode(Sha256::digest(request.body))
    );
    let Scope {
        date,
        region,
        service,
    } = scope;
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = hmac(format!("AWS4{secret}").as_bytes(), date);
    let key = hmac(&key, region);
    let key = hmac(&key, service);
    let key = hmac(&key, "aws4_request");
    Ok(hex::encode(hmac(&key, &string_to_sign)))
}

/// A key to sign requests with.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

/// Signs a POST to `path` with `host` and `headers` (lowercase names) and `body` at
/// `now_epoch_secs`: returns the `x-amz-date` and `authorization` header values. Every header
/// given is signed, as the AWS SDKs do.
pub fn sign(
    key: &SigningKey,
    host: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    now_epoch_secs: i64,
) -> (String, String) {
    let amz_date = format_amz_date(now_epoch_secs);
    let date = &amz_date[..8];
    let mut all: Vec<(String, String)> = headers.to_vec();
    all.push(("host".into(), host.into()));
    all.push(("x-amz-date".into(), amz_date.clone()));
    all.sort();
    let signed_headers = all
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let scope = Scope {
        date,
        region: &key.region,
        service: "ecs",
    };
    let request = Canonical {
        method: "POST",
        path,
        query: "",
        headers: &all,
        signed_headers: &signed_headers,
        body,
    };
    // Every signed header is present by construction, so this cannot fail.
    let signature =
        compute_signature(&key.secret_access_key, &scope, &amz_date, &request).unwrap_or_default();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{}/ecs/aws4_request, SignedHeaders={signed_headers}, Signature={signature}",
        key.access_key_id, key.region
    );
    (amz_date, authorization)
}

/// Epoch seconds → `20261125T170000Z`.
fn format_amz_date(epoch_secs: i64) -> String {
    let days = epoch_secs.div_euclid(86_400);
    let seconds = epoch_secs.rem_euclid(86_400);
    // The civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// `20261125T170000Z` → epoch seconds.
fn parse_amz_date(text: &str) -> Option<i64> {
    if text.len() != 16 || !text.ends_with('Z') || text.as_bytes()[8] != b'T' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

pub use crate::net::same_secret;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_sign_signs_verifies() {
        let key = SigningKey {
            access_key_id: "AKID".into(),
            secret_access_key: "s3cret".into(),
            region: "us-east-1".into(),
        };
        let credentials = Credentials::from_json(r#"{"AKID": "s3cret"}"#).unwrap();
        let now = 1_764_000_000;
        let extra = vec![("x-amz-target".to_string(), "A.B".to_string())];
        let (date, authorization) = sign(&key, "127.0.0.1:8080", "/", &extra, b"{}", now);
        assert_eq!(parse_amz_date(&date), Some(now));
        let mut headers = extra.clone();
        headers.push(("host".into(), "127.0.0.1:8080".into()));
        headers.push(("x-amz-date".into(), date));
        headers.push(("authorization".into(), authorization));
        verify(&credentials, "POST", "/", "", &headers, b"{}", now).unwrap();
        assert!(verify(&credentials, "POST", "/", "", &headers, b"{ }", now).is_err());
    }

    #[test]
    fn formats_amz_dates() {
        for epoch in [0, 951_782_400, 1_440_938_160, 1_764_115_200, 4_102_444_799] {
            assert_eq!(
                parse_amz_date(&format_amz_date(epoch)),
                Some(epoch),
                "{epoch}"
            );
        }
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
    }

    #[test]
    fn parses_amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30"), None);
    }

    /// The AWS SigV4 test suite's `get-vanilla` case (service `service`, region `us-east-1`).
    #[test]
    fn accepts_the_aws_test_suite_signature_and_rejects_a_changed_one() {
        let credentials = Credentials::from_json(
            r#"{"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}"#,
        )
        .unwrap();
        let signature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let headers = |signature: &str| {
            vec![
                ("host".to_string(), "example.amazonaws.com".to_string()),
                ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
                (
                    "authorization".to_string(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"
                    ),
                ),
            ]
        };
        let now = 1_440_938_160;
        verify(&credentials, "GET", "/", "", &headers(signature), b"", now).unwrap();
        let wrong = verify(
            &credentials,
            "GET",
            "/",
            "",
            &headers(&"0".repeat(64)),
            b"",
            now,
        )
        .unwrap_err();
        assert_eq!(wrong.kind, ErrorKind::InvalidSignatureException);
        let late = verify(
            &credentials,
            "GET",
            "/",
            "",
            &headers(signature),
            b"",
            now + 3600,
        )
        .unwrap_err();
        assert!(
            late.message.starts_with("Signature expired"),
            "{}",
            late.message
        );
    }
}
