//! The tool catalogue, pure: built-in tools, addon tools compiled from their manifests into
//! JSON Schema 2020-12 `inputSchema`s, annotations, the `addon.call` meta-tool, the server's
//! `instructions`, and argument validation (the `jsonschema` crate) with errors mapped to a
//! code and a field path (docs/PROTOCOL.md §9.5).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use vibesync_protocol::addon::CallErrorCode;

/// A lowercase hyphenated uuid (docs/PROTOCOL.md §2): the schema of every uuid argument.
const UUID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// JSON Schema dialect of every `inputSchema`.
pub const SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// MCP tool names: `[A-Za-z0-9_.-]`, at most this many characters.
pub const MAX_TOOL_NAME: usize = 64;
/// The stable meta-tool for clients that ignore `notifications/tools/list_changed`.
pub const ADDON_CALL: &str = "addon.call";

/// The built-in tools: they work on both editors and compile to `change` ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    SceneQuery,
    Create,
    Delete,
    Transform,
    Rename,
    Reparent,
    SetMaterial,
}

impl Builtin {
    pub const ALL: [Builtin; 7] = [
        Builtin::SceneQuery,
        Builtin::Create,
        Builtin::Delete,
        Builtin::Transform,
        Builtin::Rename,
        Builtin::Reparent,
        Builtin::SetMaterial,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::SceneQuery => "scene.query",
            Builtin::Create => "object.create",
            Builtin::Delete => "object.delete",
            Builtin::Transform => "object.transform",
            Builtin::Rename => "object.rename",
            Builtin::Reparent => "object.reparent",
            Builtin::SetMaterial => "object.set_material",
        }
    }

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    pub fn read_only(self) -> bool {
        self == Builtin::SceneQuery
    }

    pub fn destructive(self) -> bool {
        matches!(
            self,
            Builtin::Delete | Builtin::Transform | Builtin::Rename | Builtin::Reparent | Builtin::SetMaterial
        )
    }

    pub fn description(self) -> &'static str {
        match self {
            Builtin::SceneQuery => "List the synced objects of the project (both editors): uuid, kind, name, parent, position `t`, rotation `r` (quaternion x,y,z,w), scale `s`, visibility, material. Filter by `uuid` or exact `name`. Coordinates are the canonical frame: meters, Y up, right-handed (glTF).",
            Builtin::Create => "Create an object in both Blender and Unity (an empty / bare GameObject; use an addon tool for meshes). Coordinates: meters, Y up (glTF frame). Returns its uuid.",
            Builtin::Delete => "Delete an object (by uuid) in both editors. Refused while objects are under it: reparent or delete them first.",
            Builtin::Transform => "Move, rotate or scale an object (by uuid) in both editors; omitted parts keep their value. Meters, Y up (glTF frame); rotation is a quaternion [x, y, z, w].",
            Builtin::Rename => "Rename an object (by uuid) in both editors.",
            Builtin::Reparent => "Make an object (by uuid) a child of another (`parent` uuid) or a root (`parent` null), in both editors.",
            Builtin::SetMaterial => "Set an object's material (Principled BSDF in Blender, Lit/Standard in Unity): base color RGBA, metallic, roughness, emission RGB.",
        }
    }

    pub fn input_schema(self) -> Value {
        let uuid =
            json!({"type": "string", "pattern": UUID_PATTERN, "description": "The object's uuid (from scene.query)"});
        let vec3 = |d: &str| json!({"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3, "description": d});
        let quat = json!({"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 1}, "minItems": 4, "maxItems": 4, "description": "Rotation quaternion [x, y, z, w]"});
        let unit = |d: &str| json!({"type": "number", "minimum": 0, "maximum": 1, "description": d});
        let (props, required): (Value, Vec<&str>) = match self {
            Builtin::SceneQuery => (
                json!({"uuid": uuid, "name": {"type": "string", "maxLength": 1024, "description": "Exact object name"}}),
                vec![],
            ),
            Builtin::Create => (
                json!({
                    "name": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "parent": {"type": ["string", "null"], "pattern": UUID_PATTERN, "description": "Parent uuid, or null for a root"},
                    "location": vec3("Position in meters (Y up)"),
                    "rotation": quat,
                    "scale": vec3("Scale factors"),
                    "visible": {"type": "boolean"},
                }),
                vec!["name"],
            ),
            Builtin::Delete => (json!({"uuid": uuid}), vec!["uuid"]),
            Builtin::Transform => (
                json!({"uuid": uuid, "location": vec3("Position in meters (Y up)"), "rotation": quat, "scale": vec3("Scale factors")}),
                vec!["uuid"],
            ),
            Builtin::Rename => (
                json!({"uuid": uuid, "name": {"type": "string", "minLength": 1, "maxLength": 1024}}),
                vec!["uuid", "name"],
            ),
            Builtin::Reparent => (
                json!({"uuid": uuid, "parent": {"type": ["string", "null"], "pattern": UUID_PATTERN, "description": "New parent uuid, or null for a root"}}),
                vec!["uuid", "parent"],
            ),
            Builtin::SetMaterial => (
                json!({
                    "uuid": uuid,
                    "base_color": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 4, "maxItems": 4, "description": "RGBA, 0-1"},
                    "metallic": unit("0-1"),
                    "roughness": unit("0-1"),
                    "emission": {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 3, "maxItems": 3, "description": "RGB"},
                }),
                vec!["uuid", "base_color"],
            ),
        };
        object_schema(props, &required)
    }
}

fn object_schema(props: Value, required: &[&str]) -> Value {
    json!({
        "$schema": SCHEMA_2020_12,
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// One addon tool as agents see it.
#[derive(Debug, Clone, PartialEq)]
pub struct AddonTool {
    /// MCP name: `addon_id.tool`.
    pub name: String,
    pub addon_id: String,
    pub tool: String,
    pub description: String,
    pub input_schema: Value,
    pub read_only: bool,
    pub destructive: bool,
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Whether a name is a valid MCP tool name here.
pub fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Compile one manifest parameter into its JSON Schema.
pub fn param_schema(p: &Value) -> Value {
    let mut s = Map::new();
    let ty = str_of(p, "type");
    let num = |s: &mut Map<String, Value>| {
        if let Some(m) = p.get("min").filter(|v| v.is_number()) {
            s.insert("minimum".into(), m.clone());
        }
        if let Some(m) = p.get("max").filter(|v| v.is_number()) {
            s.insert("maximum".into(), m.clone());
        }
    };
    let mut desc = str_of(p, "description").to_string();
    match ty {
        "integer" => {
            s.insert("type".into(), json!("integer"));
            num(&mut s);
        }
        "float" => {
            s.insert("type".into(), json!("number"));
            num(&mut s);
        }
        "boolean" => {
            s.insert("type".into(), json!("boolean"));
        }
        "enum" => {
            s.insert("type".into(), json!("string"));
            s.insert("enum".into(), p.get("options").cloned().unwrap_or(json!([])));
        }
        "vector3" | "color" => {
            let mut items = Map::new();
            items.insert("type".into(), json!("number"));
            num(&mut items);
            s.insert("type".into(), json!("array"));
            s.insert("items".into(), Value::Object(items));
            s.insert("minItems".into(), json!(3));
            s.insert("maxItems".into(), json!(if ty == "color" { 4 } else { 3 }));
        }
        "object_name" | "material_name" | "collection_name" => {
            s.insert("type".into(), json!("string"));
            let what = ty.trim_end_matches("_name");
            desc = format!("{desc} (name of an existing Blender {what})").trim().to_string();
        }
        "file_path" => {
            s.insert("type".into(), json!("string"));
            desc =
                format!("{desc} (a file inside the project's folder; relative paths start there)").trim().to_string();
        }
        _ => {
            s.insert("type".into(), json!("string"));
        }
    }
    if !desc.is_empty() {
        s.insert("description".into(), json!(desc));
    }
    if let Some(d) = p.get("default") {
        s.insert("default".into(), d.clone());
    }
    s.insert("x-vibesync-type".into(), json!(ty));
    Value::Object(s)
}

/// Compile every tool of a registry entry (`available_addons[i]`).
pub fn addon_tools(entry: &Value) -> Vec<AddonTool> {
    let addon_id = str_of(entry, "addon_id");
    let addon_desc = str_of(entry, "agent_description");
    let mut out = vec![];
    for t in entry.get("tools").and_then(Value::as_array).into_iter().flatten() {
        let tool = str_of(t, "name");
        let name = format!("{addon_id}.{tool}");
        if !valid_tool_name(&name) {
            continue; // Blender's validation refuses these; never offer a bad name
        }
        let mut props = Map::new();
        let mut required = vec![];
        for p in t.get("parameters").and_then(Value::as_array).into_iter().flatten() {
            let pname = str_of(p, "name");
            props.insert(pname.to_string(), param_schema(p));
            if p.get("required").and_then(Value::as_bool).unwrap_or(false) {
                required.push(pname);
            }
        }
        let mut description = str_of(t, "description").to_string();
        if !str_of(t, "usage").is_empty() {
            description.push_str(&format!("\nWhen to use: {}", str_of(t, "usage")));
        }
        let examples: Vec<&str> =
            t.get("examples").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        if !examples.is_empty() {
            description.push_str(&format!("\nExamples: {}", examples.join("; ")));
        }
        if !addon_desc.is_empty() {
            description.push_str(&format!("\nFrom the `{addon_id}` add-on: {addon_desc}"));
        }
        let read_only = t.get("read_only").and_then(Value::as_bool).unwrap_or(false);
        out.push(AddonTool {
            name,
            addon_id: addon_id.to_string(),
            tool: tool.to_string(),
            description,
            input_schema: object_schema(Value::Object(props), &required),
            read_only,
            destructive: !read_only && t.get("destructive").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    out
}

/// Every addon tool of a daemon `registry_updated`, by MCP name.
pub fn registry_tools(registry: &Value) -> BTreeMap<String, AddonTool> {
    registry
        .get("available_addons")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(addon_tools)
        .map(|t| (t.name.clone(), t))
        .collect()
}

/// `addon.call`'s input schema.
pub fn addon_call_schema() -> Value {
    object_schema(
        json!({
            "addon_id": {"type": "string", "minLength": 1, "description": "The add-on id (before the dot of its tool names)"},
            "tool": {"type": "string", "minLength": 1, "description": "The tool name (after the dot)"},
            "arguments": {"type": "object", "description": "The tool's arguments (see its schema in tools/list)"},
        }),
        &["addon_id", "tool"],
    )
}

pub const ADDON_CALL_DESCRIPTION: &str = "Call any add-on tool by id and name, with its arguments: the same as calling `<addon_id>.<tool>` directly. Use it when your client does not refresh the tool list.";

/// The server's `instructions`: what the bridge is and what each add-on is for.
pub fn instructions(registry: Option<&Value>) -> String {
    let mut s = String::from(
        "VibeSync bridges Blender and Unity. Built-in tools (scene.query, object.*) act on both editors through the \
         same governed path as a person's edits; add-on tools (`<addon_id>.<tool>`) run inside Blender in one undo step \
         and their results reach Unity. Calls wait while a person is editing; a failed call is undone. Coordinates of \
         built-in tools are meters, Y up (glTF frame). New add-on tools appear with notifications/tools/list_changed; \
         `addon.call` reaches any of them.",
    );
    for a in registry.and_then(|r| r.get("available_addons")).and_then(Value::as_array).into_iter().flatten() {
        s.push_str(&format!(
            "\n\nAdd-on `{}` ({}): {}",
            str_of(a, "addon_id"),
            str_of(a, "name"),
            str_of(a, "agent_description")
        ));
        for h in a.get("context_hints").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            s.push_str(&format!("\n- {h}"));
        }
    }
    s
}

/// A refused argument: its code and the field at fault (JSON pointer into the arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct ArgError {
    pub code: CallErrorCode,
    pub field: String,
    pub message: String,
}

/// Validate arguments against a tool's `inputSchema` (2020-12). The first error wins, most
/// specific first (unknown/missing fields, then type, then range/options).
pub fn validate_args(schema: &Value, args: &Value) -> Result<(), ArgError> {
    let validator = jsonschema::draft202012::new(schema).map_err(|e| ArgError {
        code: CallErrorCode::InvalidType,
        field: String::new(),
        message: format!("the tool's schema is invalid: {e}"),
    })?;
    let mut errors: Vec<ArgError> = vec![];
    for e in validator.iter_errors(args) {
        use jsonschema::error::ValidationErrorKind as K;
        let at = e.instance_path().as_str().to_string();
        let (code, field) = match e.kind() {
            K::AdditionalProperties { unexpected } => {
                (CallErrorCode::UnknownField, format!("{at}/{}", unexpected.first().cloned().unwrap_or_default()))
            }
            K::Required { property } => {
                (CallErrorCode::MissingField, format!("{at}/{}", property.as_str().unwrap_or_default()))
            }
            K::Type { .. } => (CallErrorCode::InvalidType, at),
            K::Enum { .. } => (CallErrorCode::InvalidOption, at),
            // docs/PROTOCOL.md §9.2: `OUT_OF_RANGE` is a number below `min` / above `max` or a
            // vector of the wrong length; a string that does not match its pattern or length
            // (a malformed uuid, an empty name) is refused for another reason.
            K::Minimum { .. }
            | K::Maximum { .. }
            | K::ExclusiveMinimum { .. }
            | K::ExclusiveMaximum { .. }
            | K::MinItems { .. }
            | K::MaxItems { .. } => (CallErrorCode::OutOfRange, at),
            _ => (CallErrorCode::InvalidArgument, at),
        };
        errors.push(ArgError { code, field, message: e.to_string() });
    }
    let rank = |c: CallErrorCode| match c {
        CallErrorCode::UnknownField => 0,
        CallErrorCode::MissingField => 1,
        CallErrorCode::InvalidType => 2,
        _ => 3,
    };
    errors.sort_by_key(|e| rank(e.code));
    match errors.into_iter().next() {
        None => Ok(()),
        Some(mut e) => {
            e.message = format!("argument `{}`: {}", if e.field.is_empty() { "/" } else { &e.field }, e.message);
            Err(e)
        }
    }
}

/// Arguments checked against `schema` as Blender's router reads them: JSON Schema counts `2.0`
/// as an `integer`, Blender's router does not, so an integer parameter sent as a number with
/// no fractional part goes on as that integer (docs/PROTOCOL.md §9.5).
pub fn integers_as_integers(schema: &Value, args: &mut Value) {
    let (Some(props), Some(args)) = (schema.get("properties").and_then(Value::as_object), args.as_object_mut()) else {
        return;
    };
    for (name, p) in props {
        if p.get("type").and_then(Value::as_str) != Some("integer") {
            continue;
        }
        if let Some(v) = args.get_mut(name) {
            if let Some(f) = v.as_f64().filter(|f| v.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15) {
                *v = json!(f as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_entry() -> Value {
        json!({"addon_id": "rmg", "name": "R", "agent_description": "makes meshes", "context_hints": ["hint"],
            "tools": [{"name": "add_cube", "description": "adds", "usage": "when asked", "examples": ["add a cube"],
                "parameters": [
                    {"name": "size", "type": "float", "min": 0.1, "max": 10, "required": true},
                    {"name": "kind", "type": "enum", "options": ["a", "b"]},
                    {"name": "at", "type": "vector3"},
                    {"name": "color", "type": "color", "min": 0, "max": 1},
                    {"name": "obj", "type": "object_name"},
                    {"name": "path", "type": "file_path"},
                    {"name": "n", "type": "integer", "default": 3},
                    {"name": "flag", "type": "boolean"}]},
                {"name": "peek", "description": "reads", "parameters": [], "read_only": true}]})
    }

    #[test]
    fn schemas_are_valid_2020_12_and_validate() {
        let tools = addon_tools(&manifest_entry());
        assert_eq!(tools.len(), 2);
        assert!(tools[1].read_only && !tools[1].destructive);
        let all: Vec<Value> = tools
            .iter()
            .map(|t| t.input_schema.clone())
            .chain(Builtin::ALL.iter().map(|b| b.input_schema()))
            .chain([addon_call_schema()])
            .collect();
        for s in &all {
            assert!(jsonschema::draft202012::meta::is_valid(s), "{s}");
        }
        let s = &tools[0].input_schema;
        assert!(validate_args(s, &json!({"size": 1.0, "kind": "a", "at": [1, 2, 3], "color": [1, 0, 0, 1]})).is_ok());
        let e = |v: Value| validate_args(s, &v).unwrap_err();
        assert_eq!(e(json!({"size": 11})).code, CallErrorCode::OutOfRange);
        assert_eq!(e(json!({"size": 11})).field, "/size");
        assert_eq!(e(json!({"size": 1, "kind": "c"})).code, CallErrorCode::InvalidOption);
        assert_eq!(e(json!({"size": "x"})).code, CallErrorCode::InvalidType);
        let x = e(json!({"size": 1, "extra": 1}));
        assert_eq!((x.code, x.field.as_str()), (CallErrorCode::UnknownField, "/extra"));
        let x = e(json!({}));
        assert_eq!((x.code, x.field.as_str()), (CallErrorCode::MissingField, "/size"));
        let x = e(json!({"size": 1, "color": [2, 0, 0]}));
        assert_eq!((x.code, x.field.as_str()), (CallErrorCode::OutOfRange, "/color/0"));
        assert_eq!(e(json!({"size": 1, "at": [1, 2]})).code, CallErrorCode::OutOfRange);
        // `2.0` is an integer to JSON Schema: it goes on as 2, as Blender's router reads one.
        let mut args = json!({"size": 1.5, "n": 2.0});
        assert!(validate_args(s, &args).is_ok());
        integers_as_integers(s, &mut args);
        assert_eq!(args, json!({"size": 1.5, "n": 2}));
        assert!(args["n"].is_i64());
        // A malformed uuid or an empty name is no number out of range (docs/PROTOCOL.md §9.2).
        let rename = Builtin::ALL.iter().find(|b| b.name() == "object.rename").unwrap().input_schema();
        let x = validate_args(&rename, &json!({"uuid": "ZZZ", "name": "a"})).unwrap_err();
        assert_eq!((x.code, x.field.as_str()), (CallErrorCode::InvalidArgument, "/uuid"));
        let create = Builtin::ALL.iter().find(|b| b.name() == "object.create").unwrap().input_schema();
        let x = validate_args(&create, &json!({"name": ""})).unwrap_err();
        assert_eq!((x.code, x.field.as_str()), (CallErrorCode::InvalidArgument, "/name"));
        // A parent is a uuid or null, checked as every uuid argument is.
        let reparent = Builtin::ALL.iter().find(|b| b.name() == "object.reparent").unwrap().input_schema();
        let u = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
        let x = validate_args(&reparent, &json!({"uuid": u, "parent": "NOT A UUID"})).unwrap_err();
        assert_eq!((x.code, x.field.as_str()), (CallErrorCode::InvalidArgument, "/parent"));
        assert!(validate_args(&reparent, &json!({"uuid": u, "parent": null})).is_ok());
        let x = validate_args(&create, &json!({"name": "a", "parent": "X"})).unwrap_err();
        assert_eq!((x.code, x.field.as_str()), (CallErrorCode::InvalidArgument, "/parent"));
    }

    #[test]
    fn names_and_instructions() {
        assert!(valid_tool_name("random_mesh_generator.add_random_cube"));
        assert!(!valid_tool_name("a b"));
        assert!(!valid_tool_name(&"x".repeat(65)));
        for b in Builtin::ALL {
            assert!(valid_tool_name(b.name()));
            assert_eq!(Builtin::from_name(b.name()), Some(b));
        }
        let reg = json!({"available_addons": [manifest_entry()]});
        let i = instructions(Some(&reg));
        assert!(i.contains("makes meshes") && i.contains("- hint"));
        let t = &registry_tools(&reg)["rmg.add_cube"];
        assert!(t.description.contains("When to use: when asked") && t.description.contains("add a cube"));
    }
}
