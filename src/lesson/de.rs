//! Typed reading of a block's TOML body with serde derive: a `serde::Deserializer` over the `toml`
//! crate's spanned document tree whose errors read the way lesson errors do ("title: expected a
//! string, found integer", "unknown key 'hint' (expected one of: question, ...)") and carry the
//! byte span of the key or value at fault, which [`super::body::TomlBody`] turns into a file
//! line and column.
//!
//! A body struct derives `Deserialize` with `#[serde(deny_unknown_fields)]`, so its field list is
//! the list of allowed keys. `#[serde(rename = "...")]` on a struct names it in unknown-key and
//! missing-key messages ("temperature: slider: unknown key 'step'"); an empty rename names nothing.
//! Simple values use the leaf types below ([`Text`], [`Finite`], [`Flag`], [`Int`]);
//! values with richer rules are declared [`Present`] and read from the table with the helpers in
//! `body.rs`. `toml::Spanned<T>` works on any field and gives its span.

use super::error::num;
use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde::forward_to_deserialize_any;
use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// An error while reading a body: the message (with the key path in front once located) and the
/// byte span in the body it is about (`None`: the body as a whole).
#[derive(Debug)]
pub(crate) struct DeError {
    pub message: String,
    pub span: Option<Range<usize>>,
    /// Whether the message has its path and span yet (set where the error is first located).
    located: bool,
}

impl DeError {
    fn new(message: String) -> Self {
        DeError {
            message,
            span: None,
            located: false,
        }
    }

    /// Put `prefix: ` in front of the message and attach `span`, unless already located.
    fn at(mut self, prefix: &str, span: Option<Range<usize>>) -> Self {
        if !self.located {
            if !prefix.is_empty() {
                self.message = format!("{prefix}: {}", self.message);
            }
            self.span = span;
            self.located = true;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// The TOML type name of what serde saw.
fn type_name(unexp: Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(_) => "boolean".into(),
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "integer".into(),
        Unexpected::Float(_) => "float".into(),
        Unexpected::Char(_) | Unexpected::Str(_) => "string".into(),
        Unexpected::Seq => "array".into(),
        Unexpected::Map => "table".into(),
        Unexpected::Other(s) => s.into(),
        other => other.to_string(),
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        DeError::new(format!("expected {exp}, found {}", type_name(unexp)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(format!(
            "unknown key '{field}' (expected one of: {})",
            expected.join(", ")
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing '{field}'"))
    }
}

fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => path.to_string(),
        (false, false) => format!("{path}: {key}"),
    }
}

/// Read the root table of a body as `T`; `path` names it in messages ("predict", or "" when its
/// keys speak for themselves). An error without a span is about the body as a whole (a missing key).
pub(crate) fn from_table<'t, T: de::Deserialize<'t>>(
    table: &'t DeTable<'_>,
    path: &str,
) -> Result<T, DeError> {
    T::deserialize(TableDe {
        table,
        path: path.to_string(),
        span: None,
    })
    .map_err(|e| e.at(path, None))
}

/// Read one value of a body as `T`; `path` names it in messages ("temperature").
pub(crate) fn from_value<'t, T: de::Deserialize<'t>>(
    value: &'t Spanned<DeValue<'_>>,
    path: &str,
) -> Result<T, DeError> {
    T::deserialize(ValueDe {
        value,
        path: path.to_string(),
    })
    .map_err(|e| e.at(path, Some(value.span())))
}

/// A value of the tree, with the key path that leads to it.
struct ValueDe<'t, 'i> {
    value: &'t Spanned<DeValue<'i>>,
    path: String,
}

impl<'de, 't: 'de, 'i> IntoDeserializer<'de, DeError> for ValueDe<'t, 'i> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de, 't: 'de, 'i> Deserializer<'de> for ValueDe<'t, 'i> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.value.span();
        let result = match self.value.get_ref() {
            DeValue::String(s) => visitor.visit_str(s),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => visitor.visit_i64(n),
                Err(_) => Err(DeError::new(format!("{} is too large", i.as_str()))),
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(x) => visitor.visit_f64(x),
                Err(_) => Err(DeError::new("not a number that fits an f64".into())),
            },
            DeValue::Boolean(b) => visitor.visit_bool(*b),
            DeValue::Datetime(_) => Err(de::Error::invalid_type(
                Unexpected::Other("datetime"),
                &visitor,
            )),
            DeValue::Array(items) => visitor.visit_seq(ArrayAccess {
                items: items.iter(),
                path: &self.path,
            }),
            DeValue::Table(table) => {
                return TableDe {
                    table,
                    path: self.path.clone(),
                    span: Some(span.clone()),
                }
                .deserialize_any(visitor)
                .map_err(|e| e.at(&self.path, Some(span)));
            }
        };
        result.map_err(|e| e.at(&self.path, Some(span)))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = self.value.span();
        if serde_spanned::de::is_spanned(name) {
            return visitor.visit_map(serde_spanned::de::SpannedDeserializer::new(self, span));
        }
        match self.value.get_ref() {
            DeValue::Table(table) => TableDe {
                table,
                path: self.path.clone(),
                span: Some(span.clone()),
            }
            .deserialize_struct(name, fields, visitor),
            other => Err(DeError::new(format!(
                "expected a table, found {}",
                other.type_str()
            ))),
        }
        .map_err(|e| e.at(&self.path, Some(span)))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map enum identifier
    }
}

/// A table of the tree (the body itself, or a value that is a table).
struct TableDe<'t, 'i> {
    table: &'t DeTable<'i>,
    path: String,
    /// The table's span; `None` for a body's root table.
    span: Option<Range<usize>>,
}

impl<'t, 'i> TableDe<'t, 'i> {
    /// The entries in the order they are written.
    fn access(&self, noun: &str) -> TableAccess<'t, 'i> {
        let mut entries: Vec<_> = self.table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        TableAccess {
            entries: entries.into_iter(),
            value: None,
            path: self.path.clone(),
            prefix: join(&self.path, noun),
        }
    }
}

impl<'de, 't: 'de, 'i> Deserializer<'de> for TableDe<'t, 'i> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(self.access(""))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let prefix = join(&self.path, name);
        visitor.visit_map(self.access(name)).map_err(|mut e| {
            if !e.located && e.message.starts_with("missing '") {
                e.message = format!("{} (expected all of: {})", e.message, fields.join(", "));
            }
            e.at(&prefix, self.span.clone())
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier
    }
}

type Entry<'t, 'i> = (
    &'t Spanned<std::borrow::Cow<'i, str>>,
    &'t Spanned<DeValue<'i>>,
);

struct TableAccess<'t, 'i> {
    entries: std::vec::IntoIter<Entry<'t, 'i>>,
    /// The value of the key just read.
    value: Option<(&'t Spanned<DeValue<'i>>, String)>,
    /// The table's own path (its values' paths add their keys).
    path: String,
    /// How key errors name the table: its path and the struct's name.
    prefix: String,
}

impl<'de, 't: 'de, 'i> MapAccess<'de> for TableAccess<'t, 'i> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((value, join(&self.path, key.get_ref())));
        seed.deserialize(KeyDe(key.get_ref()))
            .map(Some)
            .map_err(|e| e.at(&self.prefix, Some(key.span())))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((value, path)) = self.value.take() else {
            return Err(DeError::new("a value without a key".into()));
        };
        let span = value.span();
        seed.deserialize(ValueDe {
            value,
            path: path.clone(),
        })
        .map_err(|e| e.at(&path, Some(span)))
    }
}

struct ArrayAccess<'t, 'i, 'p> {
    items: std::slice::Iter<'t, Spanned<DeValue<'i>>>,
    /// Items are named by the array's path.
    path: &'p str,
}

impl<'de, 't: 'de, 'i> SeqAccess<'de> for ArrayAccess<'t, 'i, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let span = item.span();
        seed.deserialize(ValueDe {
            value: item,
            path: self.path.to_string(),
        })
        .map(Some)
        .map_err(|e| e.at(self.path, Some(span)))
    }
}

/// A key, read as a string (struct field names).
struct KeyDe<'k>(&'k str);

impl<'de> Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.0)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

// ---------------------------------------------------------------------------------------------
// Leaf types: what a key holds, with the words its errors use.
// ---------------------------------------------------------------------------------------------

/// A value whose rules are checked by hand: the body struct only records that the key is there.
#[derive(Debug)]
pub(crate) struct Present;

impl<'de> de::Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::IgnoredAny::deserialize(d).map(|_| Present)
    }
}

/// A string with something besides whitespace in it.
#[derive(Debug)]
pub(crate) struct Text(pub String);

impl<'de> de::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(de::Error::custom("must not be empty"));
        }
        Ok(Text(s))
    }
}

/// A finite number, written as an integer or a float.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Finite(pub f64);

impl<'de> de::Deserialize<'de> for Finite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Finite;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Finite, E> {
                Ok(Finite(n as f64))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Finite, E> {
                Ok(Finite(n as f64))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Finite, E> {
                if x.is_finite() {
                    Ok(Finite(x))
                } else {
                    Err(E::custom(format!(
                        "expected a finite number, found {}",
                        num(x)
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `true` or `false`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flag(pub bool);

impl<'de> de::Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Flag, E> {
                Ok(Flag(b))
            }
        }
        d.deserialize_any(V)
    }
}

/// Any whole number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Int(pub i64);

impl<'de> de::Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Int, E> {
                Ok(Int(n))
            }
        }
        d.deserialize_any(V)
    }
}
