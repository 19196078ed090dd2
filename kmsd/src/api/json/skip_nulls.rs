//! [`SkipNulls`]: a serializer wrapper that leaves out the members of structs and maps
//! that would be JSON `null`, at every depth, and writes everything else as the
//! wrapped serializer does. The AWS JSON edge encodes responses with it, straight
//! into bytes, instead of building a `serde_json::Value`, dropping its nulls and
//! writing that: the same members, without the tree (see `super`'s module docs).
//!
//! Null is what `serde_json::to_value` makes null: `None`, `()`, a unit struct, a
//! non-finite float, and any of those inside `Some` or a newtype struct. Array
//! elements are kept whatever they are, as the `Value` pass keeps them.

use std::fmt;

use serde::ser::{
    self, Impossible, Serialize, SerializeMap, SerializeSeq, SerializeStruct,
    SerializeStructVariant, SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
    Serializer,
};

/// Serializes through `S`, leaving out null members (see the module docs).
pub struct SkipNulls<S>(pub S);

/// A value serialized through [`SkipNulls`].
struct Nn<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Nn<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(SkipNulls(s))
    }
}

/// Whether `v` serializes as JSON `null`.
fn is_null<T: Serialize + ?Sized>(v: &T) -> bool {
    v.serialize(IsNull).unwrap_or(false)
}

macro_rules! forward {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
                self.0.$method(v)
            }
        )*
    };
}

impl<S: Serializer> Serializer for SkipNulls<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Map<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Nn(v))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Nn(v))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Nn(v))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Compound)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Compound)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Compound)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Compound)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0
            .serialize_map(len)
            .map(|inner| Map { inner, key: None })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Compound)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Compound)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A sequence, tuple or struct being written through [`SkipNulls`].
pub struct Compound<C>(C);

macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(
            impl<C: $trait> $trait for Compound<C> {
                type Ok = C::Ok;
                type Error = C::Error;
                fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
                    self.0.$method(&Nn(v))
                }
                fn end(self) -> Result<C::Ok, C::Error> {
                    self.0.end()
                }
            }
        )*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

macro_rules! members {
    ($($trait:ident),* $(,)?) => {
        $(
            impl<C: $trait> $trait for Compound<C> {
                type Ok = C::Ok;
                type Error = C::Error;
                fn serialize_field<T: Serialize + ?Sized>(
                    &mut self,
                    key: &'static str,
                    v: &T,
                ) -> Result<(), C::Error> {
                    if is_null(v) {
                        return Ok(());
                    }
                    self.0.serialize_field(key, &Nn(v))
                }
                fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                    self.0.skip_field(key)
                }
                fn end(self) -> Result<C::Ok, C::Error> {
                    self.0.end()
                }
            }
        )*
    };
}

members!(SerializeStruct, SerializeStructVariant);

/// A map being written through [`SkipNulls`]. An entry given in two calls (key, then
/// value) keeps its key until the value shows whether the entry is written.
pub struct Map<M> {
    inner: M,
    key: Option<serde_json::Value>,
}

impl<M: SerializeMap> SerializeMap for Map<M> {
    type Ok = M::Ok;
    type Error = M::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), M::Error> {
        self.key = Some(serde_json::to_value(key).map_err(<M::Error as ser::Error>::custom)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), M::Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <M::Error as ser::Error>::custom("a map value without its key"))?;
        if is_null(v) {
            return Ok(());
        }
        self.inner.serialize_entry(&key, &Nn(v))
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        v: &V,
    ) -> Result<(), M::Error> {
        if is_null(v) {
            return Ok(());
        }
        self.inner.serialize_entry(key, &Nn(v))
    }

    fn end(self) -> Result<M::Ok, M::Error> {
        self.inner.end()
    }
}

/// Answers whether a value is null, looking no further than it must.
struct IsNull;

/// The answer "not null" (or a value [`IsNull`] does not look into).
#[derive(Debug)]
struct NotNull;

impl fmt::Display for NotNull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not null")
    }
}

impl std::error::Error for NotNull {}

impl ser::Error for NotNull {
    fn custom<T: fmt::Display>(_: T) -> Self {
        NotNull
    }
}

macro_rules! not_null {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method(self, _: $ty) -> Result<bool, NotNull> {
                Ok(false)
            }
        )*
    };
}

impl Serializer for IsNull {
    type Ok = bool;
    type Error = NotNull;
    type SerializeSeq = Impossible<bool, NotNull>;
    type SerializeTuple = Impossible<bool, NotNull>;
    type SerializeTupleStruct = Impossible<bool, NotNull>;
    type SerializeTupleVariant = Impossible<bool, NotNull>;
    type SerializeMap = Impossible<bool, NotNull>;
    type SerializeStruct = Impossible<bool, NotNull>;
    type SerializeStructVariant = Impossible<bool, NotNull>;

    not_null!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    // serde_json writes a NaN or an infinity as null.
    fn serialize_f32(self, v: f32) -> Result<bool, NotNull> {
        Ok(!v.is_finite())
    }

    fn serialize_f64(self, v: f64) -> Result<bool, NotNull> {
        Ok(!v.is_finite())
    }

    fn serialize_none(self) -> Result<bool, NotNull> {
        Ok(true)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<bool, NotNull> {
        v.serialize(self)
    }

    fn serialize_unit(self) -> Result<bool, NotNull> {
        Ok(true)
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<bool, NotNull> {
        Ok(true)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<bool, NotNull> {
        Ok(false)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<bool, NotNull> {
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, NotNull> {
        Ok(false)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotNull> {
        Err(NotNull)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotNull> {
        Err(NotNull)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotNull> {
        Err(NotNull)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotNull> {
        Err(NotNull)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotNull> {
        Err(NotNull)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotNull> {
        Err(NotNull)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotNull> {
        Err(NotNull)
    }

    fn is_human_readable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    /// The `Value` pass (`to_value`, then nulls dropped from every object): the one
    /// [`encode`](super::super::encode) replaced, kept beside it for tests.
    fn through_value(v: &impl Serialize) -> Value {
        super::super::encode_through_value(v).unwrap()
    }

    fn direct(v: &impl Serialize) -> Value {
        let mut out = Vec::new();
        v.serialize(SkipNulls(&mut serde_json::Serializer::new(&mut out)))
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Wrapper(Option<u8>);

    #[derive(Serialize)]
    enum E {
        Tuple(Option<u8>, Option<u8>),
        Struct { a: Option<u8>, b: u8 },
    }

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Shape {
        gone: Option<String>,
        kept: Option<String>,
        unit: Unit,
        empty_wrapper: Wrapper,
        nan: f64,
        inf: Option<f32>,
        nested: Vec<Option<Shape>>,
        map: BTreeMap<String, Option<u8>>,
        e: Vec<E>,
        unit_variant: Option<()>,
    }

    #[test]
    fn leaves_out_what_the_value_pass_drops_and_nothing_else() {
        let inner = Shape {
            gone: None,
            kept: Some("x".into()),
            unit: Unit,
            empty_wrapper: Wrapper(Some(3)),
            nan: 1.5,
            inf: Some(f32::INFINITY),
            nested: vec![None],
            map: BTreeMap::from([("a".into(), None), ("b".into(), Some(2))]),
            e: vec![E::Tuple(None, Some(1)), E::Struct { a: None, b: 2 }],
            unit_variant: Some(()),
        };
        let outer = Shape {
            gone: None,
            kept: None,
            unit: Unit,
            empty_wrapper: Wrapper(None),
            nan: f64::NAN,
            inf: None,
            nested: vec![Some(inner), None],
            map: BTreeMap::new(),
            e: vec![],
            unit_variant: None,
        };
        let want = through_value(&outer);
        assert_eq!(direct(&outer), want);
        // The case it is for: a null member at the top and inside an array's struct.
        assert!(want.get("Gone").is_none());
        assert_eq!(want["Nested"][0]["Kept"], json!("x"));
        assert!(want["Nested"][0].get("Gone").is_none());
        assert_eq!(want["Nested"][1], Value::Null);
        assert_eq!(want["Nested"][0]["Map"], json!({"b": 2}));
    }

    #[test]
    fn a_map_given_key_then_value_is_written_the_same() {
        struct Split;
        impl Serialize for Split {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                m.serialize_key("null")?;
                m.serialize_value(&None::<u8>)?;
                m.serialize_key(&7u32)?;
                m.serialize_value(&Some("seven"))?;
                m.end()
            }
        }
        assert_eq!(direct(&Split), json!({"7": "seven"}));
        assert_eq!(direct(&Split), through_value(&Split));
    }
}
