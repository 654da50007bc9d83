//! The hostile bodies: who sends them and how each is built.

use super::*;

/// Who sends a body.
#[derive(Debug, Clone, Copy)]
pub(super) enum Caller {
    /// The bootstrap admin.
    Admin,
    /// An account's token with every non-admin permission.
    Operator,
    /// The same account's token without permissions.
    Reader,
}

/// One hostile request.
#[derive(Debug, Clone)]
pub(super) struct Case {
    pub(super) action: &'static str,
    pub(super) caller: Caller,
    pub(super) category: &'static str,
    pub(super) body: Vec<u8>,
    /// The error codes that are right for it (empty: any code).
    pub(super) codes: &'static [&'static str],
    /// The status it must get, when only one is right.
    pub(super) status: Option<u16>,
}

pub(super) const MALFORMED: &[&str] = &["malformed_json"];
pub(super) const INVALID: &[&str] = &["invalid_arguments"];

/// A JSON object from `(key, JSON text)` pairs, keys repeated as given.
pub(super) fn object(fields: &[(String, String)]) -> Vec<u8> {
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    format!("{{{}}}", inner.join(",")).into_bytes()
}

/// The required fields of `spec`, with fillers.
pub(super) fn base(spec: &[(&'static str, Ty)]) -> Vec<(String, String)> {
    spec.iter()
        .filter(|(_, t)| t.required())
        .map(|(k, t)| (k.to_string(), filler(k, *t)))
        .collect()
}

/// Any JSON value (as text), nested a few levels.
pub(super) fn junk() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A character no argument may hold.
pub(super) fn unsafe_char() -> BoxedStrategy<char> {
    prop_oneof![
        proptest::char::range('\u{0}', '\u{1f}'),
        Just('\u{7f}'),
        proptest::char::range('\u{80}', '\u{9f}'),
        proptest::char::range('\u{202a}', '\u{202e}'),
        proptest::char::range('\u{2066}', '\u{2069}'),
    ]
    .boxed()
}

/// A value `ty` does not accept (never `null` for an optional field, which
/// means "absent"). JSON text, so overflowing numbers can be written.
pub(super) fn wrong(ty: Ty) -> BoxedStrategy<String> {
    let not_string = prop_oneof![
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("1.5".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just(r#"["a"]"#.to_string()),
        junk()
            .prop_filter("not a string or null", |v| !v.is_string() && !v.is_null())
            .prop_map(|v| v.to_string()),
    ];
    let not_int = prop_oneof![
        (i64::MIN..0).prop_map(|n| n.to_string()),
        Just("-0.5".to_string()),
        Just("0.5".to_string()),
        Just("2048.0".to_string()),
        Just("1e300".to_string()),
        Just("18446744073709551616".to_string()),
        Just("340282366920938463463374607431768211456".to_string()),
        Just(r#""2048""#.to_string()),
        Just("true".to_string()),
        Just("[2048]".to_string()),
        Just(r#"{"n":1}"#.to_string()),
    ];
    let not_bool = prop_oneof![
        Just("1".to_string()),
        Just("0".to_string()),
        Just(r#""true""#.to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ];
    let not_list = prop_oneof![
        Just(r#""system.admin""#.to_string()),
        Just("7".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        Just("[1]".to_string()),
        Just("[null]".to_string()),
        Just(r#"[["x"]]"#.to_string()),
        Just(r#"["a",{"b":1}]"#.to_string()),
    ];
    let not_map = prop_oneof![
        Just(r#""k=v""#.to_string()),
        Just("[]".to_string()),
        Just("3".to_string()),
        Just(r#"{"k":1}"#.to_string()),
        Just(r#"{"k":null}"#.to_string()),
        Just(r#"{"k":{"nested":"x"}}"#.to_string()),
        Just(r#"{"k":["x"]}"#.to_string()),
    ];
    match ty {
        Ty::Str => prop_oneof![Just("null".to_string()), not_string].boxed(),
        Ty::OptStr => not_string.boxed(),
        Ty::OptEnum => prop_oneof![
            not_string,
            Just(r#""zz-not-a-variant""#.to_string()),
            Just(r#""Flannel""#.to_string()),
            Just(r#""""#.to_string()),
        ]
        .boxed(),
        Ty::Int => prop_oneof![Just("null".to_string()), not_int].boxed(),
        Ty::OptInt => not_int.boxed(),
        Ty::OptBool => not_bool.boxed(),
        Ty::List => prop_oneof![Just("null".to_string()), not_list].boxed(),
        Ty::OptList => not_list.boxed(),
        Ty::OptMap => not_map.boxed(),
        Ty::Any => unreachable!("`Any` fields are never given a wrong value"),
    }
}

/// Bytes that are not JSON at all, or JSON text broken in one place.
pub(super) fn not_json(spec: &'static [(&'static str, Ty)]) -> BoxedStrategy<Vec<u8>> {
    let good = object(&base(spec));
    let cut = {
        let good = good.clone();
        (1..good.len()).prop_map(move |n| good[..n].to_vec())
    };
    let field = spec.first().map_or("name", |(k, _)| k);
    let fixed: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"}".to_vec(),
        b"{\"a\":1,}".to_vec(),
        b"{'name':'x'}".to_vec(),
        b"{name:\"x\"}".to_vec(),
        b"{/* comment */}".to_vec(),
        format!("{{\"{field}\":NaN}}").into_bytes(),
        format!("{{\"{field}\":Infinity}}").into_bytes(),
        format!("{{\"{field}\":1e400}}").into_bytes(),
        format!("{{\"{field}\":-1e400}}").into_bytes(),
        format!("{{\"{field}\":\"\\u12\"}}").into_bytes(),
        format!("{{\"{field}\":\"\\ud800\"}}").into_bytes(),
        format!("{{\"{field}\":\"a\u{1}b\"}}").into_bytes(),
        [b"{\"".as_slice(), field.as_bytes(), b"\":\"\xff\xfe\"}"].concat(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"{}{}".to_vec(),
        b"{} x".to_vec(),
        b"undefined".to_vec(),
        b"\x00".to_vec(),
    ];
    let trailing = {
        let good = good.clone();
        prop_oneof![Just("x"), Just("}"), Just(",{}"), Just("]"), Just("\"")]
            .prop_map(move |t| [good.as_slice(), t.as_bytes()].concat())
    };
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 1..200).prop_filter(
            "not JSON",
            |b| !b.iter().all(u8::is_ascii_whitespace)
                && serde_json::from_slice::<Value>(b).is_err()
        ),
        2 => cut,
        2 => proptest::sample::select(fixed),
        1 => trailing,
    ]
    .boxed()
}

/// The strategy for one case of `action`.
pub(super) fn case(action: &'static str) -> BoxedStrategy<Case> {
    let spec = spec(action).unwrap_or_else(|| panic!("{action}: no argument spec"));
    let names: Vec<&'static str> = spec.iter().map(|(k, _)| *k).collect();
    let first_name: &'static str = names.first().copied().unwrap_or("x");
    let caller = prop_oneof![
        Just(Caller::Admin),
        Just(Caller::Operator),
        Just(Caller::Reader)
    ];
    let non_admin = prop_oneof![Just(Caller::Operator), Just(Caller::Reader)];
    let mk = move |category: &'static str, codes: &'static [&'static str], status: Option<u16>| {
        move |(caller, body): (Caller, Vec<u8>)| Case {
            action,
            caller,
            category,
            body,
            codes,
            status,
        }
    };
    let unknown_key = {
        let names = names.clone();
        "[a-z_]{1,16}".prop_filter("not an argument", move |k| !names.contains(&k.as_str()))
    };
    let mut options: Vec<(u32, BoxedStrategy<Case>)> = vec![
        (
            3,
            (caller.clone(), not_json(spec))
                .prop_map(mk("not_json", MALFORMED, Some(400)))
                .boxed(),
        ),
        (
            2,
            (
                caller.clone(),
                junk()
                    .prop_filter("not an object", |v| !v.is_object())
                    .prop_map(|v| v.to_string().into_bytes()),
            )
                .prop_map(mk("not_an_object", INVALID, Some(400)))
                .boxed(),
        ),
        (
            3,
            (
                caller.clone(),
                proptest::sample::select(
                    names
                        .iter()
                        .map(|k| k.to_string())
                        .chain(["x".to_string()])
                        .collect::<Vec<_>>(),
                ),
                junk(),
                junk(),
                any::<bool>(),
            )
                .prop_map(move |(caller, key, a, b, first)| {
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| *k != key);
                    let at = if first { 0 } else { fields.len() };
                    fields.insert(at, (key.clone(), a.to_string()));
                    fields.push((key, b.to_string()));
                    (caller, object(&fields))
                })
                .prop_map(mk("duplicate_key", MALFORMED, Some(400)))
                .boxed(),
        ),
        (
            3,
            (
                caller.clone(),
                ".{0,12}",
                unsafe_char(),
                ".{0,12}",
                0..4usize,
                proptest::sample::select(
                    names
                        .iter()
                        .map(|k| k.to_string())
                        .chain(["label".to_string()])
                        .collect::<Vec<_>>(),
                ),
            )
                .prop_map(move |(caller, pre, c, post, place, key)| {
                    let evil = format!("{pre}{c}{post}");
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| *k != key);
                    let value = match place {
                        0 => json!(evil),
                        1 => json!([evil]),
                        2 => json!({ "k": evil }),
                        _ => {
                            // The control character in a key.
                            fields.push((evil, json!("x").to_string()));
                            return (caller, object(&fields));
                        }
                    };
                    fields.push((key, value.to_string()));
                    (caller, object(&fields))
                })
                .prop_map(mk("control_character", INVALID, Some(400)))
                .boxed(),
        ),
        (
            3,
            (caller.clone(), unknown_key, junk())
                .prop_map(move |(caller, key, v)| {
                    let mut fields = base(spec);
                    fields.push((key, v.to_string()));
                    (caller, object(&fields))
                })
                .prop_map(mk("unknown_field", INVALID, Some(400)))
                .boxed(),
        ),
        (
            2,
            (
                caller.clone(),
                MAX_ARGUMENT_TEXT + 1..100_000usize,
                proptest::char::range('a', 'z'),
                proptest::sample::select(
                    names
                        .iter()
                        .map(|k| k.to_string())
                        .chain(["note".to_string()])
                        .collect::<Vec<_>>(),
                ),
                any::<bool>(),
            )
                .prop_map(move |(caller, len, c, key, as_key)| {
                    let huge: String = std::iter::repeat_n(c, len).collect();
                    let mut fields = base(spec);
                    if as_key {
                        fields.push((huge, "1".into()));
                    } else {
                        fields.retain(|(k, _)| *k != key);
                        fields.push((key, json!(huge).to_string()));
                    }
                    (caller, object(&fields))
                })
                .prop_map(mk("huge_string", INVALID, Some(400)))
                .boxed(),
        ),
        (
            1,
            (caller.clone(), 130..3_000usize, any::<bool>())
                .prop_map(move |(caller, depth, arrays)| {
                    let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| k != first_name);
                    fields.push((
                        first_name.to_string(),
                        format!("{}1{}", open.repeat(depth), close.repeat(depth)),
                    ));
                    (caller, object(&fields))
                })
                .prop_map(mk("deep_nesting", MALFORMED, Some(400)))
                .boxed(),
        ),
        (
            1,
            (caller.clone(), 0..64usize)
                .prop_map(move |(caller, extra)| {
                    let mut body = br#"{"name":""#.to_vec();
                    body.resize(body.len() + 2 * 1024 * 1024 + extra, b'a');
                    body.extend_from_slice(b"\"}");
                    (caller, body)
                })
                .prop_map(mk("oversized_body", &["body_too_large"], Some(413)))
                .boxed(),
        ),
    ];
    let typed: Vec<(&'static str, Ty)> = spec
        .iter()
        .copied()
        .filter(|(_, t)| *t != Ty::Any)
        .collect();
    if !typed.is_empty() {
        let strategy =
            proptest::sample::select(typed).prop_flat_map(|(field, ty)| (Just(field), wrong(ty)));
        options.push((
            4,
            (caller.clone(), strategy)
                .prop_map(move |(caller, (field, value))| {
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| *k != field);
                    fields.push((field.to_string(), value));
                    (caller, object(&fields))
                })
                .prop_map(mk("wrong_type", INVALID, Some(400)))
                .boxed(),
        ));
    }
    let required: Vec<&'static str> = spec
        .iter()
        .filter(|(_, t)| t.required())
        .map(|(k, _)| *k)
        .collect();
    if !required.is_empty() {
        options.push((
            2,
            (caller.clone(), proptest::sample::select(required))
                .prop_map(move |(caller, missing)| {
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| k != missing);
                    (caller, object(&fields))
                })
                .prop_map(mk("missing_field", INVALID, Some(400)))
                .boxed(),
        ));
    }
    let ids: Vec<&'static str> = names.iter().copied().filter(|k| is_id(k)).collect();
    if !ids.is_empty() {
        options.push((
            4,
            (
                non_admin,
                proptest::collection::vec(0..VICTIM_IDS, ids.len()),
            )
                .prop_map(move |(caller, picks)| {
                    // Marker bytes, replaced by the victim's real ids at run time.
                    let mut fields = base(spec);
                    for (field, pick) in ids.iter().zip(picks) {
                        fields.retain(|(k, _)| k != field);
                        fields.push((
                            field.to_string(),
                            json!(format!("@victim{pick}@")).to_string(),
                        ));
                    }
                    (caller, object(&fields))
                })
                .prop_map(mk("other_accounts_ids", &[], None))
                .boxed(),
        ));
    }
    proptest::strategy::Union::new_weighted(options).boxed()
}
