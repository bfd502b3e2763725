//! A request's `data` arrays: nested JSON arrays flattened as they are
//! read, never past the shape's element count.

/// What a `data` array holds: FP32 numbers, or BYTES as base64 strings.
pub(super) trait Element: Sized {
    /// What an element must be, for a refusal.
    const WHAT: &'static str;
    fn from_number(_: f64) -> Option<Self> {
        None
    }
    fn from_text(_: &str) -> Option<Self> {
        None
    }
}

impl Element for f32 {
    const WHAT: &'static str = "a number";
    fn from_number(v: f64) -> Option<Self> {
        Some(v as f32)
    }
}

impl Element for String {
    const WHAT: &'static str = "a (base64) string";
    fn from_text(v: &str) -> Option<Self> {
        Some(v.to_string())
    }
}

/// Flattens nested arrays of elements, in row-major order, into `T`s as
/// they are read from the JSON text (a million zeros are a million `f32`s,
/// never a million JSON values): past `limit` elements it stops with an
/// error, before the rest is read.
pub(super) fn flatten<T: Element>(json: &str, limit: usize) -> Result<Vec<T>, String> {
    use serde::de::DeserializeSeed;
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    let mut de = serde_json::Deserializer::from_str(json);
    Flat {
        out: &mut out,
        limit,
        top: true,
    }
    .deserialize(&mut de)
    .map_err(|e| {
        // serde_json adds " at line 1 column …": the message is the point.
        let e = e.to_string();
        e.split(" at line ").next().unwrap_or(&e).to_string()
    })?;
    Ok(out)
}

/// One level of [`flatten`]'s arrays (`top`: the `data` itself, which must be one).
struct Flat<'a, T> {
    out: &'a mut Vec<T>,
    limit: usize,
    top: bool,
}

impl<T: Element> Flat<'_, T> {
    fn push<E: serde::de::Error>(self, v: Option<T>) -> Result<(), E> {
        if self.top {
            return Err(E::custom("`data` must be an array"));
        }
        if self.out.len() == self.limit {
            return Err(E::custom(format!(
                "`data` holds more than the shape's {} elements",
                self.limit
            )));
        }
        let v =
            v.ok_or_else(|| E::custom(format!("element {} is not {}", self.out.len(), T::WHAT)))?;
        self.out.push(v);
        Ok(())
    }
}

impl<'de, T: Element> serde::de::DeserializeSeed<'de> for Flat<'_, T> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Element> serde::de::Visitor<'de> for Flat<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of elements, flat or nested")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (out, limit) = (self.out, self.limit);
        while seq
            .next_element_seed(Flat {
                out: &mut *out,
                limit,
                top: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.push(T::from_text(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_number(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_number(v as f64))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_number(v as f64))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.push(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.push(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.push(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_data_flattens_in_row_major_order() {
        let out: Vec<f32> = flatten("[[1, 2], [3, [4.5]]]", 4).unwrap();
        assert_eq!(out, [1.0, 2.0, 3.0, 4.5]);
        let words: Vec<String> = flatten(r#"["a", ["b"]]"#, 2).unwrap();
        assert_eq!(words, ["a", "b"]);
        assert_eq!(
            flatten::<f32>("\"x\"", 4).unwrap_err(),
            "`data` must be an array"
        );
        assert!(flatten::<f32>("{\"a\": 1}", 4).is_err());
        assert_eq!(
            flatten::<f32>("[1, {\"a\": 1}]", 4).unwrap_err(),
            "element 1 is not a number"
        );
        assert_eq!(
            flatten::<String>("[\"a\", 7]", 4).unwrap_err(),
            "element 1 is not a (base64) string"
        );
    }

    #[test]
    fn data_past_the_shape_is_refused_without_being_read() {
        // Six MiB of `0,`: refused at the shape's count plus one, and the
        // rest is never turned into values (nor even parsed).
        let mut huge = String::from("[");
        huge.push_str(&"0,".repeat(3 << 20));
        huge.push_str("0]");
        let e = flatten::<f32>(&huge, 16).unwrap_err();
        assert_eq!(e, "`data` holds more than the shape's 16 elements");
        // Malformed text after the point of refusal is not reached either.
        let e = flatten::<f32>("[1, 2, 3, oops", 2).unwrap_err();
        assert!(e.contains("more than the shape's 2"), "{e}");
        assert_eq!(flatten::<f32>("[[1], [2]]", 2).unwrap().len(), 2);
    }
}
