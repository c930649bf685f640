//! Human-friendly units in the configuration: durations such as `"30m"` and sizes such as
//! `"256k"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a string such as `"30m"`, `"8h"` or `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Text(String),
        }
        let example = "a number and a unit in quotes, such as \"90s\", \"30m\" or \"8h\"";
        match Raw::deserialize(d)? {
            Raw::Num(n) => {
                Err(serde::de::Error::custom(format!("{n} is not a duration: write {example}")))
            }
            Raw::Text(text) => {
                humantime::parse_duration(text.trim()).map(HumanDuration).map_err(|_| {
                    serde::de::Error::custom(format!("{text:?} is not a duration: write {example}"))
                })
            }
        }
    }
}

/// A size written as `"256k"`, `"512m"`, `"1g"` (binary units) or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Option<ByteSize> {
        let text = text.trim().to_ascii_lowercase();
        let text = text.strip_suffix("ib").or_else(|| text.strip_suffix('b')).unwrap_or(&text);
        let (digits, shift) = match text.chars().last()? {
            'k' => (&text[..text.len() - 1], 10),
            'm' => (&text[..text.len() - 1], 20),
            'g' => (&text[..text.len() - 1], 30),
            _ => (text, 0),
        };
        let n: u64 = digits.trim().parse().ok()?;
        n.checked_mul(1 << shift).map(ByteSize)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        let text = match n {
            0 => "0".to_string(),
            n if n % (1 << 30) == 0 => format!("{}g", n >> 30),
            n if n % (1 << 20) == 0 => format!("{}m", n >> 20),
            n if n % (1 << 10) == 0 => format!("{}k", n >> 10),
            n => n.to_string(),
        };
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a size: write a number of bytes or a number and a unit in \
                     quotes, such as \"256k\", \"512m\" or \"1g\""
                ))
            }),
        }
    }
}
