//! `[log]`: how `serve` and `port` write their log on standard error.

use serde::Deserialize;

use super::ConfigError;

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// One line of text per event, or one JSON object per line.
    #[serde(default)]
    pub format: LogFormat,
    /// What is logged, in `TEXTGATE_LOG`'s syntax (`info`, `warn,textgate_engine=debug`);
    /// `None`: `info`. `TEXTGATE_LOG` wins over it.
    pub level: Option<String>,
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL target: message field=value …`, for people.
    #[default]
    Text,
    /// `{"timestamp", "level", "target", "message", fields…}`, for log processors.
    Json,
}

/// The levels a filter directive may name.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl LogConfig {
    /// The filter: `level`, else `info`.
    pub fn filter(&self) -> &str {
        self.level.as_deref().unwrap_or("info")
    }

    /// `level` is a list of `LEVEL` or `TARGET=LEVEL` directives, which is all the
    /// documentation promises of the filter syntax (a span filter is for `TEXTGATE_LOG`).
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let Some(level) = &self.level else {
            return Ok(());
        };
        let bad = |d: &str| {
            ConfigError::new(
                "log.level",
                format!("{d:?} is not a level: use one of trace, debug, info, warn, error, off, or TARGET=LEVEL, separated by commas (\"warn,textgate_engine=debug\")"),
            )
        };
        if level.trim().is_empty() {
            return Err(bad(level));
        }
        for d in level.split(',').map(str::trim) {
            let (target, lvl) = d.rsplit_once('=').unwrap_or(("", d));
            let target_ok = target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !target_ok || !LEVELS.contains(&lvl.to_ascii_lowercase().as_str()) {
                return Err(bad(d));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(log: &str) -> Result<Config, crate::config::ConfigError> {
        let text = format!("[log]\n{log}\n[[device]]\nname='a'\nkind='loopback'\n");
        let c = Config::parse(&text, &|_| None)?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn format_and_level_are_parsed_and_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.log.format, super::LogFormat::Text);
        assert_eq!(c.log.filter(), "info");
        let c = parse("format = 'json'\nlevel = 'warn,textgate_engine=debug'").unwrap();
        assert_eq!(c.log.format, super::LogFormat::Json);
        assert_eq!(c.log.filter(), "warn,textgate_engine=debug");
        let e = parse("format = 'yaml'").unwrap_err();
        assert!(
            e.message.contains("yaml") && e.message.contains("json"),
            "{e}"
        );
        assert_eq!(e.key, "line 2");
        let e = parse("level = 'loud'").unwrap_err();
        assert_eq!(e.key, "log.level");
        assert_eq!(parse("level = 'a b=info'").unwrap_err().key, "log.level");
        assert_eq!(parse("level = ''").unwrap_err().key, "log.level");
        assert!(parse("colour = 'red'")
            .unwrap_err()
            .message
            .contains("colour"));
    }
}
