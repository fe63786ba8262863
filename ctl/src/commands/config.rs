//! `kvs config --app APP`: the app's config vars as `KEY=value` lines (like `heroku config -s`),
//! ready for `eval` or a `.env` file; `--json` prints the `{KEY: value}` object.

use std::collections::BTreeMap;

use kvs_proto::pb;

use super::Context;
use crate::cli::AppArg;
use crate::connect::request;
use crate::output;

pub async fn config(ctx: &Context, args: AppArg) -> anyhow::Result<()> {
    kvs_proto::names::validate_app(&args.app)?;
    let client = ctx.client().await?;
    let message = pb::AppRef {
        app: args.app.clone(),
    };
    let response = client
        .call(client.admin().get_config_vars(request(message)))
        .await?;
    let vars: BTreeMap<String, String> = response.vars.into_iter().collect();
    if ctx.json {
        return output::print_json(&serde_json::to_value(&vars)?);
    }
    if vars.is_empty() {
        eprintln!("{} has no config vars.", args.app);
    }
    print!("{}", env_lines(&vars));
    Ok(())
}

/// `KEY=value` lines, sorted by key.
pub fn env_lines(vars: &BTreeMap<String, String>) -> String {
    vars.iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sorted() {
        let vars: BTreeMap<String, String> = [
            (
                "REDIS_URL".to_string(),
                "rediss://default:p@h:1".to_string(),
            ),
            (
                "HEROKU_REDIS_AMBER_URL".to_string(),
                "rediss://default:q@h:2".to_string(),
            ),
        ]
        .into();
        assert_eq!(
            env_lines(&vars),
            "HEROKU_REDIS_AMBER_URL=rediss://default:q@h:2\nREDIS_URL=rediss://default:p@h:1\n"
        );
    }
}
