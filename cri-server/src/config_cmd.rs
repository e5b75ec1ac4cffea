//! `corrald config default` and `corrald config dump`: the embedded defaults as a commented
//! file, and the configuration a start would use (the file, then the flags), as
//! `containerd config default` and `crio config` give an operator.

use crate::config::Config;

/// The defaults, commented; a unit test keeps it equal to `Config::default()` and
/// complete (every key the defaults serialize appears in it).
pub const DEFAULT_TOML: &str = include_str!("default-config.toml");

/// The effective configuration as TOML.
pub fn dump(config: &Config) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> toml::Value {
        toml::from_str(text).unwrap()
    }

    /// Every key path of a TOML value (tables only; arrays are leaves).
    fn keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let path = format!("{prefix}{k}");
                out.push(path.clone());
                keys(v, &format!("{path}."), out);
            }
        }
    }

    #[test]
    fn the_default_file_is_the_defaults() {
        let parsed = Config::parse(DEFAULT_TOML).unwrap();
        assert_eq!(
            value(&dump(&parsed).unwrap()),
            value(&dump(&Config::default()).unwrap())
        );
    }

    #[test]
    fn the_default_file_names_every_key() {
        let (mut want, mut have) = (Vec::new(), Vec::new());
        keys(&value(&dump(&Config::default()).unwrap()), "", &mut want);
        keys(&value(DEFAULT_TOML), "", &mut have);
        let missing: Vec<_> = want.iter().filter(|k| !have.contains(k)).collect();
        assert!(missing.is_empty(), "default-config.toml lacks {missing:?}");
    }

    #[test]
    fn a_dump_reads_back_as_the_same_config() {
        let mut c = Config {
            log_level: "debug".into(),
            ..Default::default()
        };
        c.streaming.port = 10010;
        let text = dump(&c).unwrap();
        assert_eq!(
            value(&dump(&Config::parse(&text).unwrap()).unwrap()),
            value(&text)
        );
        assert!(text.contains("port = 10010"), "{text}");
    }
}
