//! Bearer-token checks for the Admin and Config services, and the join-token check of agent
//! registration. Tokens are compared in constant time.

use kvs_proto::ApiError;
use kvs_proto::metadata::AUTHORIZATION;
use tonic::metadata::MetadataMap;

/// Checks `authorization: Bearer <expected>`.
pub fn check_bearer(metadata: &MetadataMap, expected: &str, what: &str) -> Result<(), ApiError> {
    let header = metadata.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthenticated(format!("missing {what} (authorization: Bearer <token>)"))
    })?;
    let presented = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthenticated(
                "malformed authorization header; expected 'Bearer <token>'".into(),
            )
        })?;
    if !constant_time_eq(presented.trim().as_bytes(), expected.as_bytes()) {
        return Err(ApiError::Unauthenticated(format!("wrong {what}")));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A tonic interceptor that requires the admin token.
#[derive(Clone)]
pub struct AdminToken(pub std::sync::Arc<str>);

impl tonic::service::Interceptor for AdminToken {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        check_bearer(request.metadata(), &self.0, "admin token")?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(value: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(v) = value {
            m.insert(AUTHORIZATION, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn bearer_checks() {
        assert!(check_bearer(&md(Some("Bearer secret")), "secret", "admin token").is_ok());
        let missing = check_bearer(&md(None), "secret", "admin token").unwrap_err();
        assert!(missing.to_string().contains("missing admin token"));
        assert!(check_bearer(&md(Some("Bearer wrong")), "secret", "t").is_err());
        assert!(check_bearer(&md(Some("secret")), "secret", "t").is_err());
        assert!(check_bearer(&md(Some("Bearer secre")), "secret", "t").is_err());
    }
}
