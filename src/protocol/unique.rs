//! Reading a JSON object into a serde shape with every member name unique (§3.3: a
//! name repeated in the same object is `malformed_frame` in the envelope and
//! `invalid_field` in a payload). serde derive refuses a repeated *known* member
//! but skips unknown ones, repeats included; this layer sees every member name of
//! the outermost object as the shape's own visitor reads it, in the same single
//! pass, and fails on the first repeat. Member values, the ciphertext among them,
//! go to the shape untouched: nothing is parsed twice.
//!
//! Names are compared after JSON unescaping (`"a\u0062"` repeats `"ab"`), as JSON
//! parsers that keep the last or the first member would see them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Names compared one by one up to this many members; past it they move to a hash
/// set, so that an object of thousands of members costs linear time.
const LINEAR_NAMES_MAX: usize = 16;

/// `serde_json::from_str` for an object whose member names must be unique. Nested
/// objects are not checked (none of the shapes read through here has one; an
/// envelope's `payload` is read raw and checked by its own call).
pub(crate) fn from_str<'a, T: de::Deserialize<'a>>(json: &'a str) -> serde_json::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = T::deserialize(Unique(&mut deserializer))?;
    deserializer.end()?;
    Ok(value)
}

/// The member names of one object read so far: the first few in place (no
/// allocation for the usual payload), the rest in a hash set.
struct Names<'de> {
    few: [Cow<'de, str>; LINEAR_NAMES_MAX],
    few_len: usize,
    many: Option<ahash::HashSet<Cow<'de, str>>>,
}

impl<'de> Names<'de> {
    fn new() -> Names<'de> {
        Names {
            few: [const { Cow::Borrowed("") }; LINEAR_NAMES_MAX],
            few_len: 0,
            many: None,
        }
    }

    /// Records `name`; false if the object already had it.
    fn insert(&mut self, name: Cow<'de, str>) -> bool {
        if let Some(many) = self.many.as_mut() {
            return many.insert(name);
        }
        if self.few[..self.few_len].contains(&name) {
            return false;
        }
        if self.few_len < LINEAR_NAMES_MAX {
            self.few[self.few_len] = name;
            self.few_len += 1;
            return true;
        }
        let mut many: ahash::HashSet<Cow<'de, str>> =
            self.few.iter_mut().map(std::mem::take).collect();
        many.insert(name);
        self.many = Some(many);
        true
    }
}

fn repeated<E: de::Error>() -> E {
    E::custom("a member name is repeated")
}

/// The outermost deserializer: structs and maps get their member names checked;
/// anything else is read as the inner deserializer reads it. A shape read through
/// `deserialize_any` (an untagged or internally tagged enum) would bypass the
/// check: every shape read here is a plain struct.
struct Unique<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Unique<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_struct(name, fields, ObjectVisitor(visitor))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(ObjectVisitor(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct enum
        identifier ignored_any
    }
}

/// The shape's visitor, handed a map access that checks the names.
struct ObjectVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for ObjectVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(UniqueMap {
            inner: map,
            names: Names::new(),
        })
    }

    // serde derive reads a struct from an array too; callers refuse arrays first,
    // and nothing here changes how one is read.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(seq)
    }
}

struct UniqueMap<'de, A> {
    inner: A,
    names: Names<'de>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for UniqueMap<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(NameSeed {
            seed,
            names: &mut self.names,
        })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// The shape's seed for a member name, recording the name on the way.
struct NameSeed<'n, 'de, K> {
    seed: K,
    names: &'n mut Names<'de>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for NameSeed<'_, 'de, K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        self.seed.deserialize(NameDeserializer {
            inner: deserializer,
            names: self.names,
        })
    }
}

struct NameDeserializer<'n, 'de, D> {
    inner: D,
    names: &'n mut Names<'de>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for NameDeserializer<'_, 'de, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = NameVisitor {
            inner: visitor,
            names: self.names,
        };
        self.inner.deserialize_any(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = NameVisitor {
            inner: visitor,
            names: self.names,
        };
        self.inner.deserialize_identifier(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = NameVisitor {
            inner: visitor,
            names: self.names,
        };
        self.inner.deserialize_str(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = NameVisitor {
            inner: visitor,
            names: self.names,
        };
        self.inner.deserialize_string(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        ignored_any
    }
}

/// Sees the member name as text (JSON names are strings), records it, and passes
/// it on to the shape's own name visitor.
struct NameVisitor<'n, 'de, V> {
    inner: V,
    names: &'n mut Names<'de>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for NameVisitor<'_, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_borrowed_str<E: de::Error>(self, name: &'de str) -> Result<V::Value, E> {
        if !self.names.insert(Cow::Borrowed(name)) {
            return Err(repeated());
        }
        self.inner.visit_borrowed_str(name)
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<V::Value, E> {
        if !self.names.insert(Cow::Owned(name.to_owned())) {
            return Err(repeated());
        }
        self.inner.visit_str(name)
    }

    fn visit_string<E: de::Error>(self, name: String) -> Result<V::Value, E> {
        if !self.names.insert(Cow::Owned(name.clone())) {
            return Err(repeated());
        }
        self.inner.visit_string(name)
    }
}
