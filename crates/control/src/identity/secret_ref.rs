//! ECS's contract for a container secret's `valueFrom` (the developer
//! guide's "Pass sensitive data to a container"):
//!
//! - a Secrets Manager secret's ARN,
//!   `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`, optionally
//!   followed by `:json-key:version-stage:version-id`, each of which may be
//!   empty (`arn:...:secret:db-AbCdEf:password::`);
//! - an SSM parameter's ARN, `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`;
//! - an SSM parameter's name (`/prod/db/password`, `DB_PASSWORD`).
//!
//! Parsed at RegisterTaskDefinition (a malformed entry is refused there)
//! and again at launch. [`json_key`] extracts one key of a JSON secret.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

/// What a `valueFrom` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A Secrets Manager secret (or one key of it).
    SecretsManager {
        /// The secret's ARN, without the optional parts.
        secret_id: String,
        /// The key of a JSON secret whose value is wanted.
        json_key: Option<String>,
        /// `AWSCURRENT`, `AWSPREVIOUS` or a custom label.
        version_stage: Option<String>,
        /// A version id.
        version_id: Option<String>,
    },
    /// An SSM parameter, by name or ARN.
    Parameter {
        /// As written in `valueFrom`.
        name_or_arn: String,
    },
}

/// Why a `valueFrom` is not one ECS accepts (the words of the refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValueFrom(pub String);

impl fmt::Display for BadValueFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest parameter name SSM accepts.
const MAX_PARAMETER_NAME: usize = 2048;

fn parameter_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PARAMETER_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
}

impl SecretRef {
    /// Parses the `valueFrom` of the secret named `name`.
    pub fn parse(name: &str, value_from: &str) -> Result<Self, BadValueFrom> {
        if !value_from.starts_with("arn:") {
            if !parameter_name_ok(value_from) {
                return Err(BadValueFrom(format!(
                    "The Systems Manager parameter name specified for secret {name} is invalid. The parameter name can be up to 2048 characters and include the following letters and symbols: a-zA-Z0-9_.-"
                )));
            }
            return Ok(Self::Parameter {
                name_or_arn: value_from.to_owned(),
            });
        }
        let parts: Vec<&str> = value_from.split(':').collect();
        let filled = |i: usize| parts.get(i).is_some_and(|p| !p.is_empty());
        match parts.get(2).copied() {
            Some("secretsmanager") => {
                // arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME
                // [:json-key[:version-stage[:version-id]]]
                let ok = (7..=10).contains(&parts.len())
                    && filled(1)
                    && filled(3)
                    && filled(4)
                    && filled(6)
                    && parts[5] == "secret";
                if !ok {
                    return Err(BadValueFrom(format!(
                        "The Secrets Manager secret ARN specified for secret {name} is invalid: expected arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME, optionally followed by :json-key:version-stage:version-id."
                    )));
                }
                let part = |i: usize| {
                    parts
                        .get(i)
                        .filter(|p| !p.is_empty())
                        .map(|p| p.to_string())
                };
                Ok(Self::SecretsManager {
                    secret_id: parts[..7].join(":"),
                    json_key: part(7),
                    version_stage: part(8),
                    version_id: part(9),
                })
            }
            Some("ssm") => {
                // arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME
                let ok = parts.len() == 6
                    && filled(1)
                    && filled(3)
                    && filled(4)
                    && parts[5]
                        .strip_prefix("parameter")
                        .filter(|n| n.starts_with('/'))
                        .is_some_and(|n| parameter_name_ok(n.trim_start_matches('/')));
                if !ok {
                    return Err(BadValueFrom(format!(
                        "The Systems Manager parameter ARN specified for secret {name} is invalid: expected arn:aws:ssm:REGION:ACCOUNT:parameter/NAME."
                    )));
                }
                Ok(Self::Parameter {
                    name_or_arn: value_from.to_owned(),
                })
            }
            _ => Err(BadValueFrom(format!(
                "The valueFrom of secret {name} must be a Secrets Manager secret ARN, a Systems Manager parameter ARN, or a Systems Manager parameter name."
            ))),
        }
    }

    /// The secret or parameter, as named in failure messages (the secret's
    /// ARN without the optional parts).
    pub fn target(&self) -> &str {
        match self {
            Self::SecretsManager { secret_id, .. } => secret_id,
            Self::Parameter { name_or_arn } => name_or_arn,
        }
    }
}

/// Why a JSON key could not be extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonKeyError {
    /// The secret is not a JSON object.
    NotJson,
    /// The object has no such key.
    Missing(String),
}

impl fmt::Display for JsonKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => f.write_str(
                "retrieved secret from Secrets Manager is not a JSON object, so no json key can be taken from it",
            ),
            Self::Missing(k) => write!(
                f,
                "retrieved secret from Secrets Manager did not contain json key {k}"
            ),
        }
    }
}

/// The value of `key` in the JSON object `secret`: a string as it is,
/// anything else as its JSON text (as the ECS agent prints non-string
/// values). Only that value is copied out of the secret, into memory that
/// is zeroized when dropped; the other members are skipped unread.
pub fn json_key(secret: &str, key: &str) -> Result<Zeroizing<String>, JsonKeyError> {
    let mut de = serde_json::Deserializer::from_str(secret);
    let found = Pick(key)
        .deserialize(&mut de)
        .map_err(|_| JsonKeyError::NotJson)?;
    de.end().map_err(|_| JsonKeyError::NotJson)?;
    found.ok_or_else(|| JsonKeyError::Missing(key.to_owned()))
}

/// Walks a JSON object, keeping the value of one key (the last, when a key
/// repeats, as most JSON readers do).
struct Pick<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Option<Zeroizing<String>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Option<Zeroizing<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if k == self.0 {
                found = Some(map.next_value_seed(Leaf)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// One JSON value as text.
struct Leaf;

impl<'de> DeserializeSeed<'de> for Leaf {
    type Value = Zeroizing<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Leaf {
    type Value = Zeroizing<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(serde_json::Value::from(v).to_string()))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Zeroizing::new("null".to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Zeroizing::new(v.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Zeroizing::new(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCdEf";

    #[test]
    fn secrets_manager_arns_with_and_without_the_optional_parts() {
        assert_eq!(
            SecretRef::parse("A", ARN).unwrap(),
            SecretRef::SecretsManager {
                secret_id: ARN.into(),
                json_key: None,
                version_stage: None,
                version_id: None
            }
        );
        assert_eq!(
            SecretRef::parse("A", &format!("{ARN}:password::")).unwrap(),
            SecretRef::SecretsManager {
                secret_id: ARN.into(),
                json_key: Some("password".into()),
                version_stage: None,
                version_id: None
            }
        );
        assert_eq!(
            SecretRef::parse("A", &format!("{ARN}::AWSPREVIOUS:")).unwrap(),
            SecretRef::SecretsManager {
                secret_id: ARN.into(),
                json_key: None,
                version_stage: Some("AWSPREVIOUS".into()),
                version_id: None
            }
        );
        let r = SecretRef::parse("A", &format!("{ARN}:user:AWSCURRENT:0b1c-9")).unwrap();
        assert_eq!(
            r,
            SecretRef::SecretsManager {
                secret_id: ARN.into(),
                json_key: Some("user".into()),
                version_stage: Some("AWSCURRENT".into()),
                version_id: Some("0b1c-9".into())
            }
        );
        assert_eq!(r.target(), ARN);
        // A json key alone, without the trailing placeholders.
        assert!(matches!(
            SecretRef::parse("A", &format!("{ARN}:user")).unwrap(),
            SecretRef::SecretsManager { json_key: Some(k), .. } if k == "user"
        ));
        for bad in [
            "arn:aws:secretsmanager:us-east-1:111122223333:secret",
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:",
            "arn:aws:secretsmanager:us-east-1:111122223333:key:db",
            "arn:aws:secretsmanager::111122223333:secret:db",
            &format!("{ARN}:a:b:c:d"),
        ] {
            let e = SecretRef::parse("DB", bad).unwrap_err();
            assert!(e.0.contains("secret DB is invalid"), "{bad}: {e}");
        }
    }

    #[test]
    fn parameters_by_name_or_arn() {
        for ok in [
            "DB_PASSWORD",
            "/prod/db/password",
            "arn:aws:ssm:us-east-1:111122223333:parameter/prod/db/password",
            "arn:aws:ssm:us-east-1:111122223333:parameter/flat",
        ] {
            assert_eq!(
                SecretRef::parse("P", ok).unwrap(),
                SecretRef::Parameter {
                    name_or_arn: ok.into()
                },
                "{ok}"
            );
        }
        let e = SecretRef::parse("JWT_KEY", "bad name!").unwrap_err();
        assert_eq!(
            e.0,
            "The Systems Manager parameter name specified for secret JWT_KEY is invalid. The parameter name can be up to 2048 characters and include the following letters and symbols: a-zA-Z0-9_.-"
        );
        assert!(SecretRef::parse("P", "").is_err());
        assert!(SecretRef::parse("P", &"a".repeat(2049)).is_err());
        for bad in [
            "arn:aws:ssm:us-east-1:111122223333:document/x",
            "arn:aws:ssm:us-east-1:111122223333:parameter",
            "arn:aws:ssm:us-east-1:111122223333:parameter/",
            "arn:aws:s3:::bucket",
        ] {
            assert!(SecretRef::parse("P", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_keys_are_taken_from_json_secrets() {
        let s = r#"{"username":"admin","password":"p\"w","port":5432,"tls":true,"opts":{"a":[1,2]},"none":null}"#;
        assert_eq!(*json_key(s, "password").unwrap(), "p\"w");
        assert_eq!(*json_key(s, "username").unwrap(), "admin");
        assert_eq!(*json_key(s, "port").unwrap(), "5432");
        assert_eq!(*json_key(s, "tls").unwrap(), "true");
        assert_eq!(*json_key(s, "opts").unwrap(), r#"{"a":[1,2]}"#);
        assert_eq!(*json_key(s, "none").unwrap(), "null");
        assert_eq!(
            json_key(s, "nope").unwrap_err().to_string(),
            "retrieved secret from Secrets Manager did not contain json key nope"
        );
        assert_eq!(json_key("plain text", "k"), Err(JsonKeyError::NotJson));
        assert_eq!(json_key("[1]", "k"), Err(JsonKeyError::NotJson));
        assert_eq!(
            json_key(r#"{"k":1} trailing"#, "k"),
            Err(JsonKeyError::NotJson)
        );
        assert_eq!(*json_key(r#"{"k":"a","k":"b"}"#, "k").unwrap(), "b");
    }
}
