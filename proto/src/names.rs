//! Instance names (`redis-acute-6762`) and config var names (`REDIS_URL`,
//! `HEROKU_REDIS_<COLOR>_URL`). Pure: the caller supplies the random numbers.

use crate::ProtocolError;

const ADJECTIVES: [&str; 32] = [
    "acute", "amber", "brisk", "calm", "clever", "cubic", "deep", "eager", "fluid", "gentle",
    "happy", "humble", "jolly", "keen", "lively", "lucid", "mellow", "nimble", "opaque",
    "polished", "quiet", "rapid", "rugged", "shiny", "silent", "solid", "sturdy", "swift", "tidy",
    "vivid", "warm", "witty",
];

/// Colors for the second and later attachments, in the order they are handed out.
pub const ATTACHMENT_COLORS: [&str; 16] = [
    "AMBER", "GOLD", "COBALT", "BROWN", "ONYX", "YELLOW", "CRIMSON", "OLIVE", "PURPLE", "SILVER",
    "TEAL", "WHITE", "BLACK", "RED", "GREEN", "BLUE",
];

/// The config var of an app's first instance.
pub const PRIMARY_CONFIG_VAR: &str = "REDIS_URL";

/// `redis-<adjective>-<1000..9999>` from two random numbers.
pub fn instance_name(random_word: u64, random_number: u64) -> String {
    let adjective = ADJECTIVES[(random_word % ADJECTIVES.len() as u64) as usize];
    format!("redis-{adjective}-{}", 1000 + random_number % 9000)
}

/// The config var for a new attachment, given the vars the app already has.
pub fn next_config_var<'a>(existing: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    if !existing
        .clone()
        .into_iter()
        .any(|v| v == PRIMARY_CONFIG_VAR)
    {
        return Some(PRIMARY_CONFIG_VAR.to_string());
    }
    ATTACHMENT_COLORS
        .iter()
        .map(|c| format!("HEROKU_REDIS_{c}_URL"))
        .find(|candidate| !existing.clone().into_iter().any(|v| v == candidate))
}

/// App names: lowercase letters, digits and dashes, 1 to 63 characters, starting with a letter.
pub fn validate_app(app: &str) -> Result<String, ProtocolError> {
    validate_dns_label("app", app)
}

/// Instance names follow the same rule as app names.
pub fn validate_instance_name(name: &str) -> Result<String, ProtocolError> {
    validate_dns_label("name", name)
}

fn validate_dns_label(field: &'static str, value: &str) -> Result<String, ProtocolError> {
    if value.is_empty() {
        return Err(ProtocolError::Missing(field));
    }
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts_with_letter = value.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !ok_chars || !starts_with_letter || value.len() > 63 {
        return Err(ProtocolError::invalid(
            field,
            format!(
                "'{value}' must be 1-63 lowercase letters, digits or dashes, starting with a letter"
            ),
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_look_like_heroku() {
        let name = instance_name(0, 5762);
        assert_eq!(name, "redis-acute-6762");
        assert!(validate_instance_name(&name).is_ok());
    }

    #[test]
    fn first_var_is_redis_url_then_colors() {
        assert_eq!(next_config_var([]).unwrap(), "REDIS_URL");
        assert_eq!(
            next_config_var(["REDIS_URL"]).unwrap(),
            "HEROKU_REDIS_AMBER_URL"
        );
        assert_eq!(
            next_config_var(["REDIS_URL", "HEROKU_REDIS_AMBER_URL"]).unwrap(),
            "HEROKU_REDIS_GOLD_URL"
        );
    }

    #[test]
    fn bad_app_names_are_refused() {
        assert!(validate_app("dev-app").is_ok());
        assert!(validate_app("").is_err());
        assert!(validate_app("Dev").is_err());
        assert!(validate_app("-x").is_err());
    }
}
