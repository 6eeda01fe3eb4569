//! Serde adapters for settings. Variables and flags arrive as text and the file as TOML
//! values, so a number may come as `8` or as `"8"`; free text must come as a string, since a
//! TOML number or boolean would not be kept exactly as written (`password = 1e3`).
//!
//! Owns: the `#[serde(with = …)]` adapters every setting is read through. Must never: know a
//! setting by name, or echo a value refused as text (it may be a password).

use serde::de::{Error, Visitor};
use serde::{Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

/// A value read from its text with `FromStr` (numbers, booleans, addresses): a TOML
/// scalar of any type is taken as its text.
pub mod parsed {
    use super::*;

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        d.deserialize_any(Scalar(PhantomData))
    }
}

/// [`parsed`] for a setting that may be unset.
pub mod opt_parsed {
    use super::*;

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        d.deserialize_any(Scalar(PhantomData)).map(Some)
    }
}

/// A duration, written with its unit (`"5s"`); printed the same way.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Scalar::<DurationText>(PhantomData))
            .map(|DurationText(d)| d)
    }
}

/// [`duration`] for a setting that may be unset.
pub mod opt_duration {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&humantime::format_duration(*v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// Free text: only a string, or a list of strings (joined with commas, for lists such as
/// contact points).
pub mod text {
    use super::*;

    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(Text)
    }
}

/// [`text`] for a setting that may be unset.
pub mod opt_text {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(Text).map(Some)
    }
}

/// A file or directory: one string, like [`text`] (a number or boolean is refused the same
/// way, and a list is no path).
pub mod path {
    use super::*;
    use std::path::{Path, PathBuf};

    pub fn serialize<S: Serializer>(v: &Path, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        d.deserialize_any(PathText)
    }
}

/// [`path`] for a setting that may be unset.
pub mod opt_path {
    use super::*;
    use std::path::PathBuf;

    pub fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        d.deserialize_any(PathText).map(Some)
    }
}

/// The visitor of a path: a string only.
struct PathText;

impl<'de> Visitor<'de> for PathText {
    type Value = std::path::PathBuf;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a path, as a string")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom(NOT_TEXT))
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_TEXT))
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_TEXT))
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_TEXT))
    }
}

/// Why a number or boolean is refused where text is expected. The value itself is not
/// repeated: it may be a password.
pub const NOT_TEXT: &str = "expected a string in quotes (`key = \"…\"`), since a number or boolean would not be kept exactly as written";

/// The visitor of free text.
pub struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<String, E> {
        Err(E::custom(NOT_TEXT))
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<String, E> {
        Err(E::custom(NOT_TEXT))
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<String, E> {
        Err(E::custom(NOT_TEXT))
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<String, E> {
        Err(E::custom(NOT_TEXT))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(items.join(","))
    }
}

/// A duration as `FromStr`, for [`Scalar`].
struct DurationText(Duration);

impl FromStr for DurationText {
    type Err = crate::config::BadDuration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::config::parse_duration(s).map(DurationText)
    }
}

/// The visitor of a value read from its text.
struct Scalar<T>(PhantomData<T>);

impl<T> Scalar<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn parse<E: Error>(s: &str) -> Result<T, E> {
        T::from_str(s.trim()).map_err(|e| {
            let e = e.to_string();
            // Errors such as `invalid digit found in string` do not say which string.
            if e.contains(s) {
                E::custom(e)
            } else {
                E::custom(format!("{s:?}: {e}"))
            }
        })
    }
}

impl<'de, T> Visitor<'de> for Scalar<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a boolean or a string")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
        Self::parse(v)
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }
}
