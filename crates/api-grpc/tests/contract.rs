//! The compiled proto against the published wire contract (`proto/contract/orchestrator-v1.md`,
//! a copy of the fleet's contract): every listed RPC, message, field name, number and type, and
//! every enum value, must be present exactly as published.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use orchestrator_api_grpc::pb::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use regex::Regex;

const CONTRACT: &str = include_str!("../../../proto/contract/orchestrator-v1.md");
const PACKAGE: &str = "orchestrator.v1";

/// RPCs the contract lets us leave out (they belong to other fleet services).
const NOT_OURS: [&str; 3] = ["ProcessPlanningEvent", "DeriveSubtasks", "GetTaskContext"];

/// The lines of one `## ` section of the contract.
fn section(title: &str) -> impl Iterator<Item = &'static str> {
    CONTRACT
        .lines()
        .skip_while(move |l| !l.starts_with(&format!("## {title}")))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
}

struct Proto {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, HashMap<String, i32>>,
    methods: HashMap<String, (String, String, bool)>,
}

fn proto() -> Proto {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let file = set.file.into_iter().find(|f| f.package() == PACKAGE).unwrap();
    let methods = file.service[0]
        .method
        .iter()
        .map(|m| {
            let short = |t: &str| t.rsplit('.').next().unwrap().to_owned();
            (m.name().to_owned(), (short(m.input_type()), short(m.output_type()), m.server_streaming()))
        })
        .collect();
    let enums = file
        .enum_type
        .iter()
        .map(|e| (e.name().to_owned(), e.value.iter().map(|v| (v.name().to_owned(), v.number())).collect()))
        .collect();
    let messages = file.message_type.into_iter().map(|m| (m.name().to_owned(), m)).collect();
    Proto { messages, enums, methods }
}

/// The proto type of a contract type spelled `s`, `i32`, `[]s`, `map`, `Proposal`, …
fn check_field(proto: &Proto, message: &DescriptorProto, name: &str, number: i32, spec: &str) {
    let field = message
        .field
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("{}.{name} is missing", message.name()));
    let at = format!("{}.{name}", message.name());
    assert_eq!(field.number(), number, "{at}: field number");
    let (repeated, base) = match spec.strip_prefix("[]") {
        Some(inner) => (true, inner),
        None => (false, spec),
    };
    if base.starts_with("map") {
        assert_eq!(field.label(), Label::Repeated, "{at}: a map is a repeated entry");
        let entry = message
            .nested_type
            .iter()
            .find(|n| field.type_name().ends_with(&format!(".{}", n.name())))
            .unwrap_or_else(|| panic!("{at}: map entry type"));
        assert!(entry.options.as_ref().is_some_and(|o| o.map_entry()), "{at}: is a map");
        let value = entry.field.iter().find(|f| f.name() == "value").unwrap();
        let expected_value = match base {
            "map" | "map<string,string>" => Type::String,
            "map<string,int64>" => Type::Int64,
            _ => Type::Message,
        };
        assert_eq!(value.r#type(), expected_value, "{at}: map value type");
        if let Some(inner) = base.strip_prefix("map<string,").and_then(|r| r.strip_suffix('>'))
            && expected_value == Type::Message
        {
            assert_eq!(value.type_name(), format!(".{PACKAGE}.{inner}"), "{at}: map value message");
        }
        return;
    }
    let expected_label = if repeated { Label::Repeated } else { Label::Optional };
    assert_eq!(field.label(), expected_label, "{at}: label");
    let scalar = match base {
        "s" => Some(Type::String),
        "i32" => Some(Type::Int32),
        "i64" => Some(Type::Int64),
        "d" => Some(Type::Double),
        "b" => Some(Type::Bool),
        _ => None,
    };
    match scalar {
        Some(t) => assert_eq!(field.r#type(), t, "{at}: type"),
        None => {
            let kind = if proto.enums.contains_key(base) { Type::Enum } else { Type::Message };
            assert_eq!(field.r#type(), kind, "{at}: type");
            assert_eq!(field.type_name(), format!(".{PACKAGE}.{base}"), "{at}: type name");
        }
    }
}

#[test]
fn every_published_message_field_number_and_type_is_kept() {
    let proto = proto();
    let comments = Regex::new(r"\([^)]*\)").unwrap();
    let line = Regex::new(r"^- (\w+): (.+)$").unwrap();
    let field = Regex::new(r"^(\w+)=(\d+) (\S+)$").unwrap();
    let mut checked = 0;
    for raw in section("Messages") {
        let Some(caps) = line.captures(raw.trim()) else { continue };
        let message =
            &proto.messages.get(&caps[1]).unwrap_or_else(|| panic!("message {} is missing", &caps[1]));
        // Fields are separated by ", "; a map type has a bare comma: `map<string,int64>`.
        for spec in comments.replace_all(&caps[2], "").split(", ").map(str::trim).filter(|s| !s.is_empty()) {
            let f = field.captures(spec).unwrap_or_else(|| panic!("cannot read contract field {spec:?}"));
            check_field(&proto, message, &f[1], f[2].parse().unwrap(), &f[3]);
            checked += 1;
        }
    }
    assert!(checked > 150, "read only {checked} fields from the contract");
}

#[test]
fn every_published_enum_value_is_kept() {
    let proto = proto();
    let line = Regex::new(r"^- enum (\w+): (.+)$").unwrap();
    let mut checked = 0;
    for raw in section("Messages") {
        let Some(caps) = line.captures(raw.trim()) else { continue };
        let values = &proto.enums[&caps[1]];
        let mut prefix = String::new();
        for spec in caps[2].split(',').map(str::trim) {
            let (name, number) = spec.split_once('=').unwrap();
            let name = if let Some(rest) = name.strip_prefix('_') {
                format!("{prefix}_{rest}")
            } else {
                prefix = name.rsplit_once('_').unwrap().0.to_owned();
                name.to_owned()
            };
            assert_eq!(values.get(&name), Some(&number.parse().unwrap()), "{}::{name}", &caps[1]);
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn every_published_rpc_keeps_its_request_and_response() {
    let proto = proto();
    let row = Regex::new(r"^\| (\w+) \| (\w+) → (stream )?(\w+) \|$").unwrap();
    let mut checked = 0;
    for raw in section("Service") {
        let Some(caps) = row.captures(raw.trim()).filter(|c| &c[1] != "rpc") else { continue };
        let (input, output, streaming) =
            proto.methods.get(&caps[1]).unwrap_or_else(|| panic!("rpc {} is missing", &caps[1]));
        assert_eq!((input.as_str(), output.as_str()), (&caps[2], &caps[4]), "rpc {}", &caps[1]);
        assert_eq!(*streaming, caps.get(3).is_some(), "rpc {} streaming", &caps[1]);
        checked += 1;
    }
    assert_eq!(checked, 10);
    for name in NOT_OURS {
        assert!(!proto.methods.contains_key(name), "{name} belongs to another service");
    }
}
